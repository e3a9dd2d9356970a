"""One provider's rate and concurrency held across every process sending a step.

On a journal several processes share (PostgreSQL), the run's own process and the
daemons helping it each send part of a step. The provider sees one account, so:

- the rate is one row in the journal (``rate_slots``): a process reserves the
  next block of slots (a quarter of a second's worth), each ``interval`` apart,
  and spaces its calls on them; blocks never overlap, so the spacing holds
  across processes, whoever joins or leaves;
- the concurrency is divided: each process's ``Share`` renews its row every
  ``REFRESH`` seconds and takes its part of the provider's concurrency by rank
  among the live shares; a newcomer waits ``SETTLE`` seconds (two refreshes of
  the others) before its first call, so the others have shrunk to make room.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from runner.journal.journal import Journal
from runner.journal.workers import ShareRow
from runner.model.timeparse import Rate

BLOCK = 0.25  # seconds of slots reserved at once
REFRESH = 0.5  # seconds between a share's renewals (and a newcomer's wait)
SETTLE = 2 * REFRESH + 0.5
LATE = 0.02  # seconds late a reserved slot may still be used


def rate_key(run_id: str, provider: str) -> str:
    """The shared rate of a run's provider: every process sending for it."""
    return f"{run_id}/{provider}"


class SharedRate:
    """The ``RateLimiter`` interface over the journal's shared slots."""

    def __init__(self, journal: Journal, key: str, rate: Rate) -> None:
        self.journal = journal
        self.key = key
        self.interval = 1.0 / rate.per_second
        self.block = max(1, round(rate.per_second * BLOCK))
        self.late = max(self.interval, LATE)
        self._slots: deque[float] = deque()  # monotonic times reserved for us
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for the next slot; False when ``stop`` was set while waiting."""
        with self._lock:
            if not self._slots:
                try:
                    wait = self.journal.reserve_slots(self.key, self.block, self.interval)
                except sa.exc.SQLAlchemyError:
                    wait = 1.0  # the journal away: try again in a second, no call
                    if stop is not None and stop.wait(wait):
                        return False
                    return self.acquire(stop)
                start = time.monotonic() + max(0.0, wait)
                self._slots.extend(start + i * self.interval for i in range(self.block))
            slot = self._slots.popleft()
            # a slot this process was too busy to use is gone: using it late
            # would crowd the slots another process reserved after it
            while slot < time.monotonic() - self.late and self._slots:
                slot = self._slots.popleft()
        delay = slot - time.monotonic()
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return not (stop and stop.is_set())

    def pause(self, seconds: float) -> None:
        """Push every process back: the provider asked to slow down, or is down."""
        with self._lock:
            self._slots.clear()
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self.journal.push_slots(self.key, seconds)


class Gate:
    """A semaphore whose size changes while it is held."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._cond = threading.Condition()

    def resize(self, size: int) -> None:
        with self._cond:
            self.size = size
            self._cond.notify_all()

    def acquire(self, halted: Callable[[], bool]) -> bool:
        """A place, or False once ``halted()`` while waiting for one."""
        with self._cond:
            while self.used >= self.size:
                if halted():
                    return False
                self._cond.wait(0.2)
            self.used += 1
            return True

    def release(self) -> None:
        with self._cond:
            self.used -= 1
            self._cond.notify_all()


class Share:
    """This process's part in sending a step through one provider."""

    def __init__(
        self,
        journal: Journal,
        *,
        run_id: str,
        step_id: str,
        provider: str,
        campaign: str,
        concurrency: int,
        role: str,
    ) -> None:
        self.journal = journal
        self.concurrency = concurrency
        worker = journal.worker
        self.claimer = worker.claimer()
        self.row = ShareRow(
            run_id=run_id,
            step_id=step_id,
            provider=provider,
            claimer=self.claimer,
            worker=worker.id,
            role=role,
            campaign=campaign,
            joined_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            in_flight=0,
        )
        # a newcomer starts with nothing and takes its part after SETTLE
        self.gate = Gate(concurrency if role == "driver" else 0)
        self.driver_alive = True
        self._started = time.monotonic()
        self._stop = threading.Event()
        journal.join_share(self.row)
        self._thread = threading.Thread(
            target=self._refresh_loop, name=f"share-{provider}", daemon=True
        )
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH):
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self.refresh()

    def refresh(self) -> None:
        live = self.journal.renew_share(self.row, self.gate.used)
        self.driver_alive = any(s.role == "driver" for s in live)
        if self.row.role == "helper" and time.monotonic() - self._started < SETTLE:
            return
        self.gate.resize(part(self.concurrency, self.claimer, live))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.journal.worker.done(self.claimer)
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self.journal.leave_share(self.row)


def part(concurrency: int, claimer: str, live: list[ShareRow]) -> int:
    """This claimer's part of ``concurrency`` among the ``live`` shares: equal
    parts, the remainder to the driver first, then by arrival. With more
    processes than calls the last ones get none and wait: the concurrency is the
    provider's, never exceeded."""
    order = sorted(live, key=lambda s: (s.role != "driver", s.joined_at, s.claimer))
    names = [s.claimer for s in order]
    if claimer not in names:
        names.append(claimer)
    base, extra = divmod(concurrency, len(names))
    return base + (1 if names.index(claimer) < extra else 0)
