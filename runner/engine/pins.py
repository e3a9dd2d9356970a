"""The PINs a PIN step's provider generated: hashed for the journal, exported
only when asked.

A PIN is a secret the person has not typed yet: it never goes to the event log,
the screen or the journal. The journal keeps a keyed hash (``pin verify``
checks what someone typed against it); ``run --export-pins FILE`` appends
``phone,pin`` lines to a file only its owner can read, as each PIN comes back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

from runner.errors import StepFailed
from runner.model.campaign import PinRequest
from runner.model.secrets import pin_digest, stand_in


def pin_key(pin: PinRequest, env: Mapping[str, str], *, sandbox: bool) -> str:
    """The key of a PIN step's hashes, from the environment (a rehearsal's
    stand-in when unset); raises StepFailed, before any call, without one."""
    key = env.get(pin.key_var)
    if key:
        return key
    if sandbox:
        return stand_in(pin.key_var)
    raise StepFailed(
        f"environment variable {pin.key_var} is not set: it holds the key of the "
        "PINs' hashes, and no PIN is sent without it"
    )


class PinKeeper:
    def __init__(self, key: str, export: Path | None = None) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._file = None
        if export is not None:
            try:
                fd = os.open(export, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.fchmod(fd, 0o600)  # an existing file too: PINs are in it
            except OSError as e:
                raise StepFailed(f"--export-pins {export}: {e.strerror}") from None
            self._file = os.fdopen(fd, "a", encoding="utf-8", newline="")
            if self._file.tell() == 0:
                self._file.write("phone,pin\n")
                self._file.flush()

    def keep(self, where: str, phone: str, pin: str) -> str:
        """The PIN's digest for the journal, after writing it to the export file
        (flushed: the PIN is in the person's hands from now on)."""
        if self._file is not None:
            with self._lock:
                self._file.write(f"{phone},{pin}\n")
                self._file.flush()
        return pin_digest(self.key, where, pin)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
