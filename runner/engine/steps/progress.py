"""A progress line on stderr for a send step."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from runner.engine.dispatch import Tally

if TYPE_CHECKING:
    from runner.engine.run import RunContext


class Progress:
    """A progress line on stderr: redrawn on a terminal, periodic lines otherwise."""

    def __init__(self, ctx: RunContext, step_id: str, tally: Tally, total: int) -> None:
        import sys

        self.stream = sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = ctx.out is not None
        self.step_id = step_id
        self.tally = tally
        self.total = total
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        if self.enabled:
            self._thread.start()

    def _line(self) -> str:
        t = self.tally
        done = t.done
        rate = done / max(time.monotonic() - self.started, 1e-6)
        pct = f"{100 * done / self.total:5.1f}%" if self.total else ""
        failed = sum(t.failed.values())
        return (
            f"[{self.step_id}] {done}/{self.total} {pct} sent {t.sent} failed {failed} "
            f"unknown {t.unknown} retries {t.retries} ({rate:.0f} msg/s)"
        )

    def _loop(self) -> None:
        interval = 0.5 if self.tty else 10.0
        while not self._stop.wait(interval):
            if self.tty:
                self.stream.write("\r" + self._line() + "\x1b[K")
            else:
                self.stream.write(self._line() + "\n")
            self.stream.flush()

    def stop(self) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join(timeout=2)
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
