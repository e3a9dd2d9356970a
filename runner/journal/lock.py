"""One daemon per journal: an exclusive ``flock`` on ``<journal>.lock``.

(``run`` and ``retry`` take the campaign's lease instead, ``leases.py``, so they
work beside a daemon on other campaigns.)

The kernel drops the lock when the process dies (even by ``kill -9``), so a
stale file never blocks a restart; the file holds the owner's pid for people.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from runner.errors import JournalError, UsageError


def lock_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".lock")


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class StateLock:
    """An exclusive ``flock`` on ``<journal>.lock`` holding the owner's pid.

    The kernel drops it when the process dies (even by ``kill -9``), so a stale
    file never blocks a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise JournalError(f"cannot create the lock {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f" (pid {pid})" if pid else ""
            raise UsageError(
                f"another campaign-runner daemon{who} owns this journal: lock "
                f"{self.path} is held; stop it first or use another --state"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_owner(path: Path) -> tuple[bool, int | None]:
    """(a daemon holds the lock, its pid) without taking or creating the lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False, None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True, _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)
