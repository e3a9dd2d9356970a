"""The append-only JSON Lines event log: one line per thing that happened.

Every line has ``ts``, ``event``, ``run`` and (when it applies) ``step``. Phone
numbers are masked unless the user asks otherwise; every string passes through
the secret redactor before it is written or shown. Listeners (the terminal
view, the daemon's log echo) receive the same redacted events, so what people
see and what is recorded are one stream; ``notify`` reaches listeners only,
for passing state such as a send's progress.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from runner.audience.phones import mask_phone
from runner.model.secrets import Redactor

FLUSH_EVERY = 0.25  # seconds


class Event:
    """One event as listeners see it: its name, its redacted JSON line, its fields."""

    __slots__ = ("_fields", "line", "name")

    def __init__(self, name: str, line: str) -> None:
        self.name = name
        self.line = line
        self._fields: dict[str, Any] | None = None

    @property
    def fields(self) -> dict[str, Any]:
        """The line parsed back (after redaction), parsed on first use."""
        if self._fields is None:
            self._fields = json.loads(self.line)
        return self._fields


Listener = Callable[[Event], None]


class EventLog:
    def __init__(
        self,
        path: Path | None,
        *,
        redact: Redactor | None = None,
        show_phones: bool = False,
    ) -> None:
        self.path = path
        self.redact = redact or Redactor()
        self.show_phones = show_phones
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._listeners: list[tuple[Listener, frozenset[str] | None]] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1 << 16)
        self._flushed = time.monotonic()

    def phone(self, e164: str) -> str:
        return e164 if self.show_phones else mask_phone(e164)

    def listen(self, listener: Listener, events: Collection[str] | None = None) -> None:
        """Call ``listener`` for every event (or only those named in ``events``)."""
        self._listeners.append((listener, None if events is None else frozenset(events)))

    def wants(self, event: str) -> bool:
        """Whether any listener takes ``event`` (to skip work nobody would see)."""
        return any(names is None or event in names for _, names in self._listeners)

    def emit(
        self, event: str, run: str | None = None, step: str | None = None, **fields: Any
    ) -> None:
        """Record an event and pass it to the listeners."""
        line = self._line(event, run, step, fields)
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                # buffered, flushed at least every FLUSH_EVERY seconds: a write
                # syscall per message would serialise the sender threads here
                now = time.monotonic()
                if now - self._flushed >= FLUSH_EVERY:
                    self._file.flush()
                    self._flushed = now
        self._tell(event, line)

    def notify(
        self, event: str, run: str | None = None, step: str | None = None, **fields: Any
    ) -> None:
        """Pass an event to the listeners without recording it (progress ticks)."""
        if self.wants(event):
            self._tell(event, self._line(event, run, step, fields))

    def _line(
        self, event: str, run: str | None, step: str | None, fields: dict[str, Any]
    ) -> str:
        record: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
        }
        if run is not None:
            record["run"] = run
        if step is not None:
            record["step"] = step
        record.update(fields)
        return self.redact(json.dumps(record, ensure_ascii=False, default=str))

    def _tell(self, event: str, line: str) -> None:
        if not self._listeners:
            return
        shown = Event(event, line)
        for listener, names in self._listeners:
            if names is None or event in names:
                listener(shown)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
