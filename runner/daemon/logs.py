"""The daemon's log lines: the event log echoed for people (text on stderr) or for
log shippers (JSON on stdout), through one redactor that knows every run's
secrets; APScheduler's own logs quietened to one line each."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, tzinfo
from typing import TextIO

from runner.journal.eventlog import Event
from runner.model.secrets import Redactor

QUIET_ON_TERMINAL = frozenset({"message.sent"})  # a summary follows in step.finished
SHOWN_ABOVE = frozenset({"problems"})  # printed as `validate` lines just before


class LogEcho:
    """An event log listener: every event for people (text) or log shippers (JSON),
    line-flushed."""

    def __init__(self, stream: TextIO, human: bool, tz: tzinfo | None = None) -> None:
        self.stream = stream
        self.human = human
        self.tz = tz  # of the text lines; None: the machine's local zone
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        text = human_line(event.line, self.tz) if self.human else event.line + "\n"
        if text:
            with self._lock:
                self.stream.write(text)
                self.stream.flush()


def human_line(line: str, tz: tzinfo | None = None) -> str:
    """One JSON event -> ``2026-11-23 09:00:01+01:00 run.started run=... ...``:
    the time in ``tz`` (default: the machine's local zone), with its offset, so
    a line read elsewhere (journald, a ticket) says which zone it is in."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    event = record.pop("event", "?")
    if event in QUIET_ON_TERMINAL:
        return ""
    parts = [_local(str(record.pop("ts", "")), tz), event]
    for key, value in record.items():
        if key in SHOWN_ABOVE:
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts) + "\n"


def _local(ts: str, tz: tzinfo | None) -> str:
    """An event's UTC ``ts`` in ``tz`` with its offset; left as it is if unreadable."""
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return ts
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(tz).isoformat(sep=" ", timespec="seconds")


class _OneLine(logging.Filter):
    """A logged exception becomes one line: tracebacks go to crash logs, not screens."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_scheduler_logs() -> None:
    """APScheduler's own logs: errors only, one line each.

    Misses are reported as ``schedule.misfired`` events instead of its warnings.
    """
    top = logging.getLogger("apscheduler")
    if top.getEffectiveLevel() >= logging.WARNING:
        top.setLevel(logging.ERROR)
    for name in ("scheduler", "executors.default", "jobstores.default"):
        logging.getLogger(f"apscheduler.{name}").addFilter(_OneLine())


class SharedRedactor(Redactor):
    """Every run's redactor: the daemon's one event log hides all their secrets."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: tuple[Redactor, ...] = ()

    def include(self, redactor: Redactor) -> None:
        self._parts = (*self._parts, redactor)

    def __call__(self, text: str) -> str:
        for part in self._parts:
            text = part(text)
        return text
