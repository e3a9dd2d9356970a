"""A set of phone numbers whose memory does not grow with how many it holds.

De-duplicating ten million recipients in a Python ``set`` takes most of a
gigabyte (an int object and a slot per number; issue 18), and so would a long
opt-out list. A :class:`NumberSet` keeps the latest ``limit`` numbers in a set;
past that it moves them, sorted so that the inserts are cheap, into a SQLite
file of its own (the number as ``INTEGER PRIMARY KEY``) and starts a new set.
Lookups come a chunk of rows at a time, as the callers read rows, and only the
numbers that a fixed-size bitmap of the file's numbers (one bit per hash, 16 MB)
says may be there are asked of the file: most numbers are new, and a lookup in
SQLite costs five times a bit. Memory stays at ``limit`` numbers, the bitmap and
a bounded page cache. Below ``limit`` no file is made at all.

The file goes in a folder made for it in the system's temporary directory,
removed on :meth:`close`, when the set is collected, and at exit; a folder left
by a process that was killed is removed by the next one that makes its own. A
forked worker process reads the file through a connection of its own and never
removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Self

from runner.errors import RecipientError
from runner.processes import alive

SPILL_AT = 100_000  # numbers in memory (~7 MB) before they move to the file
BITMAP_BITS = 134_217_689  # a prime near 2**27: 16 MB, ~7% false hits at 10M numbers
BATCH = 500  # numbers a lookup, when SQLite has no json_each
SPILL_BATCH = 10_000  # numbers an insert (its JSON text stays small)
CACHE_KB = 8192  # SQLite's page cache, per connection
PREFIX = "campaign-runner-numbers-"  # and the pid of the process whose folder it is


class Closes:
    """``with`` closes it: a NumberSet, and what holds one (its temporary file)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NumberSet(Closes):
    """Numbers as ints (the digits of the E.164 number), added and looked up in
    batches; in memory up to ``limit`` (default ``SPILL_AT``), then in a
    temporary SQLite file."""

    def __init__(self, limit: int | None = None, bitmap_bits: int = BITMAP_BITS) -> None:
        limit = SPILL_AT if limit is None else limit
        if limit < 1 or bitmap_bits < 1:
            raise ValueError("limit and bitmap_bits must be 1 or more")
        self.limit = limit
        self._bits = bitmap_bits
        self._bitmap = bytearray()  # made on the first spill
        self._json = True  # whether SQLite has json_each (3.38+, or JSON1)
        self._recent: set[int] = set()
        self._folder: Path | None = None
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._cleanup: weakref.finalize | None = None

    @property
    def folder(self) -> Path | None:
        """The temporary folder of the file, once numbers moved there."""
        return self._folder

    def __bool__(self) -> bool:
        return bool(self._recent) or self._folder is not None

    def add(self, keys: Iterable[int]) -> None:
        """Add numbers (already present ones too: nothing is said about them)."""
        it = iter(keys)
        while batch := list(islice(it, self.limit)):
            self._recent.update(batch)
            if len(self._recent) >= self.limit:
                self._spill()

    def contains(self, keys: Sequence[int]) -> list[bool]:
        """Whether each number is in the set."""
        recent = self._recent
        if self._folder is None:
            return [k in recent for k in keys]
        on_file = self._on_file([k for k in keys if k not in recent])
        return [k in recent or k in on_file for k in keys]

    def add_new(self, keys: Sequence[int]) -> list[bool]:
        """Add the numbers; True for each that is new, that is neither in the set
        before nor earlier in ``keys`` (the first of a number wins)."""
        recent = self._recent
        on_file = (
            self._on_file([k for k in keys if k not in recent])
            if self._folder is not None
            else frozenset()
        )
        new: list[bool] = []
        for k in keys:
            if k in recent or k in on_file:
                new.append(False)
            else:
                recent.add(k)
                new.append(True)
        if len(recent) >= self.limit:
            self._spill()
        return new

    def close(self) -> None:
        """Forget the numbers and remove the file and its folder (in the process
        that made them)."""
        self._recent, self._bitmap = set(), bytearray()
        if self._db is not None and self._pid == os.getpid():
            self._db.close()
        self._db = None
        if self._cleanup is not None:
            self._cleanup()
        self._folder = None

    @contextlib.contextmanager
    def _file_errors(self) -> Iterator[None]:
        """A full disk or an unwritable temporary directory: one line, not a crash."""
        try:
            yield
        except (OSError, sqlite3.Error) as e:
            where = self._folder or tempfile.gettempdir()
            raise RecipientError(
                f"cannot keep the recipients' numbers in a temporary file in {where}: "
                f"{e} (TMPDIR: a writable folder with space)"
            ) from e

    def _connection(self) -> sqlite3.Connection:
        """This process's connection: a forked worker opens its own (a SQLite
        connection must not cross a fork)."""
        if self._db is not None and self._pid == os.getpid():
            return self._db
        if self._folder is None:
            _sweep(Path(tempfile.gettempdir()))
            self._folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            self._cleanup = weakref.finalize(self, _remove, self._folder, os.getpid())
        db = sqlite3.connect(self._folder / "numbers.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = OFF")  # a scratch file: nothing to recover
        db.execute("PRAGMA synchronous = OFF")
        db.execute(f"PRAGMA cache_size = -{CACHE_KB}")
        db.execute("CREATE TABLE IF NOT EXISTS numbers (k INTEGER PRIMARY KEY)")
        try:
            db.execute("SELECT value FROM json_each('[1]')")
        except sqlite3.OperationalError:
            self._json = False
        self._db, self._pid = db, os.getpid()
        return db

    def _spill(self) -> None:
        """Move the numbers in memory to the file, in order, and mark them."""
        with self._file_errors():
            self._move_to_file()

    def _move_to_file(self) -> None:
        db = self._connection()
        if not self._bitmap:
            self._bitmap = bytearray(self._bits // 8 + 1)
        bitmap, bits = self._bitmap, self._bits
        for k in self._recent:
            h = k % bits
            bitmap[h >> 3] |= 1 << (h & 7)
        ordered = sorted(self._recent)
        self._recent = set()
        db.execute("BEGIN")
        for start in range(0, len(ordered), SPILL_BATCH):
            batch = ordered[start : start + SPILL_BATCH]
            if self._json:  # a statement a batch, not a Python call a number
                sql = "INSERT OR IGNORE INTO numbers (k) SELECT value FROM json_each(?)"
                db.execute(sql, (json.dumps(batch),))
            else:
                sql = "INSERT OR IGNORE INTO numbers (k) VALUES (?)"
                db.executemany(sql, ((k,) for k in batch))
        db.execute("COMMIT")

    def _on_file(self, keys: list[int]) -> set[int]:
        """Those of ``keys`` that the file holds."""
        bitmap, bits = self._bitmap, self._bits
        # ``h`` is the bit of a number: those whose bit is clear are not on file
        maybe = sorted(k for k in keys if bitmap[(h := k % bits) >> 3] >> (h & 7) & 1)
        if not maybe:
            return set()
        with self._file_errors():
            return self._ask_file(maybe)

    def _ask_file(self, maybe: list[int]) -> set[int]:
        db = self._connection()
        if self._json:
            sql = "SELECT k FROM numbers WHERE k IN (SELECT value FROM json_each(?))"
            return {k for (k,) in db.execute(sql, (json.dumps(maybe),))}
        found: set[int] = set()
        for start in range(0, len(maybe), BATCH):
            batch = maybe[start : start + BATCH]
            sql = f"SELECT k FROM numbers WHERE k IN ({','.join('?' * len(batch))})"
            found.update(k for (k,) in db.execute(sql, batch))
        return found


def _sweep(tmp: Path) -> None:
    """Remove the folders of processes gone without removing their own (killed:
    ``kill -9``, a SIGTERM to ``preview``, the machine's OOM killer). A folder is
    named for its process; one of another user, or of a live process, is left."""
    for folder in tmp.glob(f"{PREFIX}*-*"):
        pid = folder.name[len(PREFIX) :].split("-", 1)[0]
        with contextlib.suppress(OSError, ValueError):
            if folder.stat().st_uid == os.getuid() and not alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _remove(folder: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)
