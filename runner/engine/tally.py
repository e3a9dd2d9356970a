"""A send's live counters, shared by its sender threads and its progress ticker."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Live counters of one send step, shared by the workers (guarded by ``lock``).

    Messages, not attempts: ``done`` counts each message once, whatever its
    retries, and a message whose unknown outcome is settled moves from
    ``unknown`` to ``sent`` (or back to waiting, when it is queued again).
    """

    sent: int = 0
    unknown: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    requeued: int = 0
    held: int = 0  # held back at the claim by the frequency cap
    retries: int = 0
    segments: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def fail(self, reason: str) -> None:
        with self.lock:
            self.failed[reason] += 1

    def settle(self, *, sent: int, requeued: int) -> None:
        """A report settled ``sent`` unknown outcomes and queued ``requeued`` again."""
        with self.lock:
            self.unknown = max(0, self.unknown - sent - requeued)
            self.sent += sent

    @property
    def done(self) -> int:
        return self.sent + self.unknown + self.held + sum(self.failed.values())
