"""Which daemon runs the schedule when several share one PostgreSQL journal.

APScheduler 3 must not share a job store between schedulers, so exactly one
daemon (the leader) runs it: the one holding a session-level
``pg_try_advisory_lock`` on a connection of its own. PostgreSQL drops the lock
when that session ends (a crash, ``kill -9``, a network cut), and a standby,
trying every ``RETRY`` seconds, takes over. A leader that finds its session gone
stops at once rather than schedule beside the new one.

On SQLite the file lock beside the journal already admits one daemon, and this
is not used.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from runner.journal.eventlog import EventLog

RETRY = 1.0  # seconds between a standby's attempts
# the advisory lock's key: "campaign-runner scheduler" (any bigint, fixed forever)
KEY = 0x6372_5F73_6368_6564


class Leadership:
    """The leader's advisory lock, on a connection kept only for it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect()
        try:
            got = bool(
                self._conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": KEY}
                ).scalar()
            )
            self._conn.commit()  # the lock is the session's, not the transaction's
        except sa.exc.DBAPIError:
            self._drop()
            return False
        return got

    def alive(self) -> bool:
        """The session that holds the lock still exists."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1"))
            self._conn.commit()
        except sa.exc.DBAPIError:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self._conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": KEY}
                )
                self._conn.commit()
        self._drop()


def stand_by(
    leadership: Leadership,
    stopping: threading.Event,
    wake: threading.Event,
    beat: Callable[[], None],
    log: EventLog,
) -> bool:
    """Try for the leadership every ``RETRY`` seconds (beating meanwhile, so
    ``status`` shows the standby) until it is held; False if ``stopping`` first."""
    said = False
    while not stopping.is_set():
        if leadership.try_acquire():
            log.emit("daemon.leader", pid=os.getpid())
            return True
        beat()
        if not said:
            log.emit(
                "daemon.standby",
                pid=os.getpid(),
                reason="another daemon leads the schedule of this journal",
            )
            said = True
        wake.wait(RETRY)
        wake.clear()
    return False
