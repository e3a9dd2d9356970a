"""The daemon's log lines: the event log echoed for people (text on stderr) or for
log shippers (JSON on stdout), through one redactor that knows every run's
secrets; APScheduler's own logs quietened to one line each."""

from __future__ import annotations

import json
import logging
import threading
from typing import TextIO

from runner.journal.eventlog import Event
from runner.model.secrets import Redactor

QUIET_ON_TERMINAL = frozenset({"message.sent"})  # a summary follows in step.finished
SHOWN_ABOVE = frozenset({"problems"})  # printed as `validate` lines just before


class LogEcho:
    """An event log listener: every event for people (text) or log shippers (JSON),
    line-flushed."""

    def __init__(self, stream: TextIO, human: bool) -> None:
        self.stream = stream
        self.human = human
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        text = human_line(event.line) if self.human else event.line + "\n"
        if text:
            with self._lock:
                self.stream.write(text)
                self.stream.flush()


def human_line(line: str) -> str:
    """One JSON event -> ``2026-11-23 08:00:01 run.started run=... campaign=...``."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    event = record.pop("event", "?")
    if event in QUIET_ON_TERMINAL:
        return ""
    ts = str(record.pop("ts", ""))[:19].replace("T", " ")
    parts = [ts, event]
    for key, value in record.items():
        if key in SHOWN_ABOVE:
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts) + "\n"


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
