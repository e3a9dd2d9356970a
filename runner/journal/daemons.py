"""The daemons on a journal: each one's row, renewed every poll while it lives,
so ``status`` can name them all (leader or standby, host, pid, last heartbeat)
from any machine."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from runner.journal.store import Store, now_iso
from runner.journal.tables import daemons

# a daemon not heard of for this long is shown as gone
SILENT_AFTER = timedelta(seconds=15)


@dataclass(frozen=True)
class DaemonRow:
    id: str
    host: str
    pid: int
    role: str
    started_at: str
    heartbeat_at: str
    active_runs: int
    in_flight: int = 0  # messages in provider calls now, from its sends' shares

    def alive(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return datetime.fromisoformat(self.heartbeat_at) >= now - SILENT_AFTER


class DaemonRecords(Store):
    def daemon_id(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def heartbeat(self, role: str, active_runs: int) -> bool:
        """This daemon's row, created on its first beat; False when the journal
        could not be written (busy, or its server away): the next beat retries."""
        try:
            self._beat(role, active_runs)
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def _beat(self, role: str, active_runs: int) -> None:
        me = self.daemon_id()
        values = {"role": role, "heartbeat_at": now_iso(), "active_runs": active_runs}
        with self.connect() as conn:
            res = conn.execute(
                daemons.update().where(daemons.c.id == me).values(**values)
            )
            if res.rowcount == 0:
                conn.execute(
                    daemons.insert().values(
                        id=me,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=now_iso(),
                        **values,
                    )
                )

    def forget_daemon(self) -> None:
        """This daemon's row goes (a stop); left behind, it shows as gone."""
        with contextlib.suppress(sa.exc.SQLAlchemyError), self.connect() as conn:
            conn.execute(daemons.delete().where(daemons.c.id == self.daemon_id()))

    def daemon_rows(self) -> list[DaemonRow]:
        """Every daemon that beat within a day, newest heartbeat first."""
        since = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="milliseconds")
        with self.connect() as conn:
            rows = conn.execute(
                sa.select(daemons)
                .where(daemons.c.heartbeat_at >= since)
                .order_by(daemons.c.heartbeat_at.desc())
            ).mappings()
            return [DaemonRow(**dict(r)) for r in rows]
