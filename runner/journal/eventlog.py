"""The append-only JSON Lines event log: one line per thing that happened.

Every line has ``ts``, ``event``, ``run`` and (when it applies) ``step``. Phone
numbers are masked unless the user asks otherwise; every string passes through
the secret redactor before it is written or shown. Listeners (the terminal
view, the daemon's log echo) receive the same redacted events, so what people
see and what is recorded are one stream; ``notify`` reaches listeners only,
for passing state such as a send's progress.

Durable where it matters: every event but the per-message ones of a send is
written at once, together with whatever was waiting before it; the
per-message lines (hundreds a second, where one write each would serialise the
sender threads) wait at most ``FLUSH_EVERY`` seconds, written by a flusher
thread even when nothing else happens. Lines are written whole, with one
``write`` of complete lines to a file opened ``O_APPEND``, so a crash never
leaves a torn line.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.audience.phones import mask_phone
from runner.model.secrets import Redactor

FLUSH_EVERY = 0.25  # seconds a per-message line may wait
# the per-message events of a send: buffered (see the module docstring)
BUFFERED = frozenset(
    {"message.sent", "message.failed", "message.unknown", "message.retry"}
)


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
        self._fd: int | None = None
        self._waiting: list[str] = []  # whole lines not yet written
        self._listeners: list[tuple[Listener, frozenset[str] | None]] = []
        self._closed = threading.Event()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            threading.Thread(target=self._flusher, name="event-log", daemon=True).start()

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
            if self._fd is not None:
                self._waiting.append(line + "\n")
                if event not in BUFFERED:
                    self._write()
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
            self._write()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._write()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _write(self) -> None:
        """Write the waiting lines in one go (the caller holds the lock)."""
        if not self._waiting or self._fd is None:
            return
        data = "".join(self._waiting).encode("utf-8")
        self._waiting.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _flusher(self) -> None:
        while not self._closed.wait(FLUSH_EVERY):
            with self._lock:
                self._write()
