"""The terminal view of a run, drawn from its events.

Steps report what happened as events; this listener turns them into lines for
people: a line when a step starts, waits or ends, the recipients a send found,
and a progress line on stderr while it sends (redrawn on a terminal, a line
every ``PLAIN_EVERY`` seconds otherwise).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, tzinfo
from typing import TextIO

from runner.journal.eventlog import Event, EventLog

PLAIN_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal
MARKS = {
    "succeeded": "ok",
    "failed": "FAILED",
    "unsettled": "UNSETTLED",
    "skipped": "skipped",
}
EVENTS = (
    "run.changed",
    "step.paused",
    "step.waiting",
    "step.started",
    "step.scheduled",
    "step.planned",
    "recipient.invalid",
    "step.finished",
    "send.progress",
    "step.held",
    "suppression.added",
)


class Console:
    """Listens to a run's event log and writes the terminal view."""

    def __init__(self, out: TextIO, err: TextIO, tz: tzinfo) -> None:
        self.out = out
        self.err = err
        self.tz = tz
        self.tty = err.isatty()
        self._lock = threading.Lock()
        self._progress_shown = False
        self._last_plain = 0.0
        self._invalid: list[str] = []  # shown under the recipients line that follows

    def attach(self, log: EventLog) -> Console:
        log.listen(self, EVENTS)
        return self

    def __call__(self, event: Event) -> None:
        f = event.fields
        step = f.get("step", "")
        with self._lock:
            if event.name == "send.progress":
                self._progress(f)
                return
            self._clear_progress()
            if event.name == "step.started":
                self._write(f"- {step} ({f.get('kind', '')})")
            elif event.name == "step.scheduled":
                when = datetime.fromisoformat(f["at"]).astimezone(self.tz)
                self._write(f"  {step}: waiting until {when:%Y-%m-%d %H:%M:%S %Z}")
            elif event.name == "run.changed":
                what = ", ".join(f.get("changed", []))
                self._write(
                    f"campaign file changed since the run started ({what}): messages "
                    "not yet sent are rendered again"
                )
            elif event.name == "step.paused":
                when = datetime.fromisoformat(f["until"]).astimezone(self.tz)
                self._write(
                    f"  {step}: paused ({f.get('reason', '')}) until "
                    f"{when:%Y-%m-%d %H:%M:%S %Z}"
                )
            elif event.name == "step.waiting":
                self._write(
                    f"  {step}: {f.get('unknown', 0)} outcomes unknown; waiting "
                    f"{_duration(float(f.get('seconds', 0)))} for the provider's "
                    "report to list them"
                )
            elif event.name == "recipient.invalid":
                self._invalid.append(
                    f"    skipped {f['where']}: {f['to']}: {f['reason']}"
                )
            elif event.name == "step.planned":
                self._planned(f)
            elif event.name == "step.held":
                self._held(f)
            elif event.name == "suppression.added":
                why = "replied STOP" if f.get("why") == "stop" else "refused as opted out"
                self._write(
                    f"  {step}: {f.get('count', 0)} numbers {why}: added to the "
                    "suppression list (no campaign sends to them now)"
                )
            elif event.name == "step.finished" and f.get("status") != "interrupted":
                mark = MARKS.get(f.get("status", ""), f.get("status", ""))
                message = f.get("message") or ""
                self._write(f"  {step}: {mark}{' - ' + message if message else ''}")

    def _planned(self, f: dict[str, object]) -> None:
        self._write(
            f"  recipients: {f.get('accepted', 0)} to send ({f.get('read', 0)} read, "
            f"{f.get('invalid', 0)} invalid, {f.get('duplicates', 0)} duplicates, "
            f"{f.get('excluded', 0)} excluded, {f.get('filtered_out', 0)} filtered out)"
        )
        for line in self._invalid:
            self._write(line)
        invalid = int(str(f.get("invalid", 0)))
        if invalid > len(self._invalid):
            self._write(f"    ... and {invalid - len(self._invalid)} more")
        self._invalid = []

    def _held(self, f: dict[str, object]) -> None:
        parts = []
        if f.get("suppressed"):
            parts.append(f"{f['suppressed']} suppressed (on the suppression list)")
        if f.get("capped"):
            parts.append(f"{f['capped']} capped (frequency cap {f.get('cap')})")
        if f.get("deferred"):
            parts.append(f"{f['deferred']} deferred (frequency cap {f.get('cap')})")
        if f.get("released"):
            parts.append(f"{f['released']} released")
        if parts:
            self._write("  not sent now: " + ", ".join(parts))

    def _progress(self, f: dict[str, object]) -> None:
        total = int(str(f.get("total", 0)))
        done = int(str(f.get("done", 0)))
        rate = float(str(f.get("rate", 0)))
        if f.get("planning"):  # the total grows until the last one is planned
            of, pct, left = f"{total}+", "(planning)", "eta ?"
        else:
            of, pct = str(total), f"{100 * done / total:5.1f}%" if total else ""
            left = eta(done, total, rate)
        line = (
            f"[{f.get('step', '')}] {done}/{of} {pct} sent {f.get('sent', 0)} "
            f"failed {f.get('failed', 0)} unknown {f.get('unknown', 0)} "
            f"retries {f.get('retries', 0)} ({rate:.0f} msg/s, {left})"
        )
        if self.tty:
            self.err.write("\r" + line + "\x1b[K")
            self._progress_shown = True
        else:
            now = time.monotonic()
            if not self._last_plain:
                self._last_plain = now  # the first line after PLAIN_EVERY seconds
            if now - self._last_plain < PLAIN_EVERY:
                return
            self._last_plain = now
            self.err.write(line + "\n")
        self.err.flush()

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._progress_shown = False

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def eta(done: int, total: int, rate: float) -> str:
    """``eta 4m52s``: the messages left at the rate so far (``eta ?`` before the
    first one is done; the rate limit and windows are in the rate already)."""
    left = max(total - done, 0)
    if not left:
        return "eta 0s"
    if done <= 0 or rate <= 0:
        return "eta ?"
    return f"eta {_duration(math.ceil(left / rate))}"  # never 0s while some are left


def _duration(seconds: float) -> str:
    """``2d03h``, ``1h05m``, ``4m52s``, ``12s``."""
    whole = round(seconds)
    if whole >= 86400:
        return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"
