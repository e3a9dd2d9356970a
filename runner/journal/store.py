"""The journal's database: where it lives, how it is opened, created and migrated.

SQLAlchemy Core over SQLite (a file created owner-only before SQLite opens
it). Short transactions through ``connect()``; schema changes are the named
migrations of ``runner.journal.migrations``, each applied once.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from runner.errors import JournalError
from runner.journal.migrations import MIGRATIONS
from runner.journal.tables import migrations_table
from runner.journal.where import Where

MIGRATE_ATTEMPTS = 5


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _create_private(path: Path) -> None:
    """Create the file owner-only before SQLite opens it (no window of 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if not side.exists():
            fd = os.open(side, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)


class Store:
    """One journal database: a SQLite file, or the database a ``Where`` or ``url``
    names (PostgreSQL)."""

    def __init__(self, path: Path | Where | None = None, url: str | None = None) -> None:
        if isinstance(path, Where):
            where = path
            path, url, shown = where.path, where.url, str(where)
        else:
            shown = str(path) if path is not None else "the journal"
        self.path: Path | None = path
        self.where = shown  # for people: never a password
        if url is None:
            assert path is not None
            if path.is_dir():
                raise JournalError(
                    f"journal {path} is a directory: give the journal's file, "
                    f"e.g. --state {path / 'journal.db'}"
                )
            try:
                _create_private(path)
            except OSError as e:
                raise JournalError(f"cannot create journal {path}: {e.strerror}") from e
            url = f"sqlite:///{path}"
        try:
            # hide_parameters: errors and logs never carry phones or texts
            pool: dict[str, Any] = {}
            if not url.startswith("sqlite"):
                # the daemon's run threads, dispatch workers and HTTP share one pool
                pool = {"pool_size": 10, "max_overflow": 30, "pool_pre_ping": True}
            self.engine: Engine = sa.create_engine(
                url, future=True, hide_parameters=True, **pool
            )
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            self.migrate()
        except sa.exc.SQLAlchemyError as e:
            cause = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            raise JournalError(f"cannot open journal {shown}: {cause}") from e
        if path is not None:
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A short transaction: committed on success, rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    def migrate(self) -> None:
        """Apply the migrations not yet recorded.

        Each migration runs in one transaction with its record, so a process that
        loses a race to migrate a new journal (its transaction fails: locked, or
        the table exists) just rolls back, looks again and finds it done. (No file
        lock: closing any descriptor of the SQLite file would drop the POSIX locks
        SQLite itself holds on it.)
        """
        for attempt in range(MIGRATE_ATTEMPTS):
            try:
                self._migrate_once()
                return
            except sa.exc.DBAPIError:
                if attempt == MIGRATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _migrate_once(self) -> None:
        with self.connect() as conn:
            migrations_table.create(conn, checkfirst=True)
        for name, apply in MIGRATIONS:
            with self.connect() as conn:
                done = set(conn.scalars(sa.select(migrations_table.c.name)))
                if name in done:
                    continue
                apply(conn)
                conn.execute(
                    migrations_table.insert().values(name=name, applied_at=now_iso())
                )

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a committed transaction survives a process crash (kill -9);
    # only an OS crash or power loss can lose the last commits.
    # (bench/throughput.py measures the cost of that against OFF on tmpfs)
    sync = os.environ.get("CAMPAIGN_RUNNER_JOURNAL_SYNC", "NORMAL").upper()
    cur.execute(
        f"PRAGMA synchronous={sync if sync in ('OFF', 'NORMAL', 'FULL') else 'NORMAL'}"
    )
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
