"""A send's progress as ``send.progress`` notifications, twice a second.

Listeners only (the terminal view): progress is passing state, not history;
when nobody listens no thread is started.
"""

from __future__ import annotations

import threading
import time

from runner.engine.ahead import Ahead
from runner.engine.tally import Tally
from runner.journal.eventlog import EventLog

EVENT = "send.progress"
EVERY = 0.5  # seconds


class Ticker:
    """Notifies the send's counts every ``EVERY`` seconds until stopped."""

    def __init__(
        self,
        log: EventLog,
        run_id: str,
        step_id: str,
        tally: Tally,
        total: int,
        ahead: Ahead | None = None,
        counted: int = 0,
    ) -> None:
        self.log = log
        self.run_id = run_id
        self.step_id = step_id
        self.tally = tally
        self.total = total
        # a plan still growing: the total so far, marked ``planning``; ``total``
        # has the plan's messages up to ``counted`` of its ``to_send``
        self.ahead = ahead
        self._planned_before = counted
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if log.wants(EVENT):
            self._thread = threading.Thread(
                target=self._loop, name="progress", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(EVERY):
            t = self.tally
            done = t.done
            total, planning = self.total, {}
            ahead = self.ahead
            if ahead is not None:
                total += ahead.to_send - self._planned_before
                if not ahead.complete.is_set():
                    planning = {"planning": True}
            self.log.notify(
                EVENT,
                self.run_id,
                self.step_id,
                done=done,
                total=total,
                sent=t.sent,
                failed=sum(t.failed.values()),
                unknown=t.unknown,
                retries=t.retries,
                rate=round(done / max(time.monotonic() - self.started, 1e-6), 1),
                **planning,
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
