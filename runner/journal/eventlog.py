"""The append-only JSON Lines event log: one line per thing that happened.

Every line has ``ts``, ``event``, ``run`` and (when it applies) ``step``. Phone
numbers are masked unless the user asks otherwise; every string passes through
the secret redactor before it is written.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from runner.model.secrets import Redactor

FLUSH_EVERY = 0.25  # seconds


def mask(phone: str) -> str:
    """``+34600123456`` -> ``+34*****3456``: country code and last four kept."""
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


class EventLog:
    def __init__(
        self,
        path: Path | None,
        *,
        redact: Redactor | None = None,
        show_phones: bool = False,
        echo: TextIO | None = None,
    ) -> None:
        self.path = path
        self.redact = redact or Redactor()
        self.show_phones = show_phones
        self.echo = echo  # a JSON copy of every line (daemon --log-format json)
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1 << 16)
        self._flushed = time.monotonic()

    def phone(self, e164: str) -> str:
        return e164 if self.show_phones else mask(e164)

    def emit(
        self, event: str, run: str | None = None, step: str | None = None, **fields: Any
    ) -> None:
        record: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
        }
        if run is not None:
            record["run"] = run
        if step is not None:
            record["step"] = step
        record.update(fields)
        line = self.redact(json.dumps(record, ensure_ascii=False, default=str))
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                # buffered, flushed at least every FLUSH_EVERY seconds: a write
                # syscall per message would serialise the sender threads here
                now = time.monotonic()
                if now - self._flushed >= FLUSH_EVERY:
                    self._file.flush()
                    self._flushed = now
            if self.echo is not None:
                self.echo.write(line + "\n")

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
