"""A shared rate ceiling for one provider: calls are spaced, never bursted.

Every attempt (retries included) takes a slot, so the configured rate holds under
retries. Spacing instead of a token bucket keeps every one-second window at or
under the rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from runner.model.timeparse import Rate


class Limiter(Protocol):
    """What a send and a report poll take a slot from: this process's
    ``RateLimiter``, or a rate shared across processes (``sharing.SharedRate``)."""

    def acquire(self, stop: threading.Event | None = None) -> bool: ...

    def pause(self, seconds: float) -> None: ...


class RateLimiter:
    def __init__(
        self,
        rate: Rate | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate.per_second if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for the next slot; False when ``stop`` was set while waiting."""
        if not self.interval:
            return not (stop and stop.is_set())
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            self._sleep(delay)
        return not (stop and stop.is_set())

    def pause(self, seconds: float) -> None:
        """Push every caller back (a provider asked us to slow down, or is down)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)
