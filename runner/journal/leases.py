"""Who is sending a campaign now: a lease per campaign, in the journal.

A process takes the campaign's lease before it decides what to send (continue a
run, start one) and renews it while it runs, so two processes on one journal
never send one campaign at once, while other campaigns run beside it. A lease
whose owner died expires: at once when the owner was a process of this host
that no longer exists (``kill -9``), after ``TTL`` seconds otherwise.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from runner.errors import JournalError
from runner.journal.store import Store, now_iso
from runner.journal.tables import leases
from runner.processes import alive

TTL = 15.0  # seconds a lease lasts without renewal
RENEW = 2.0  # seconds between renewals


@dataclass(frozen=True)
class Holder:
    """A lease's owner, as ``status`` and refusals name it."""

    campaign: str
    run_id: str | None
    owner: str  # run | retry | daemon
    pid: int
    host: str
    since: str
    expires_at: str

    def describe(self) -> str:
        what = f"a {self.owner}" if self.owner != "daemon" else "the daemon"
        run = f"run {self.run_id}, " if self.run_id else ""
        return f"{run}{what}, pid {self.pid} on {self.host}, since {self.since}"


def _expiry(seconds: float = TTL) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(
        timespec="milliseconds"
    )


def _dead(row: Mapping[str, Any]) -> bool:
    """The holder is gone: its lease expired, or its process here no longer runs."""
    if row["expires_at"] < now_iso():
        return True
    return row["host"] == socket.gethostname() and not alive(int(row["pid"]))


def _holder(row: Mapping[str, Any]) -> Holder:
    return Holder(
        campaign=row["campaign"],
        run_id=row["run_id"],
        owner=row["owner"],
        pid=int(row["pid"]),
        host=row["host"],
        since=row["since"],
        expires_at=row["expires_at"],
    )


class LeaseRecords(Store):
    def take_lease(self, campaign: str, owner: str) -> Holder | None:
        """This process's lease on ``campaign``, or the live holder that keeps it."""
        me = {
            "owner": owner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": now_iso(),
            "expires_at": _expiry(),
            "run_id": None,
        }
        for _ in range(3):
            row = self._row(campaign)
            if row is None:
                try:
                    with self.connect() as conn:
                        conn.execute(leases.insert().values(campaign=campaign, **me))
                    return None
                except sa.exc.IntegrityError:
                    continue  # taken at the same moment: look again
            if not _dead(row):
                return _holder(row)
            # compare-and-set on the row judged dead: a racer that took it over
            # first changed expires_at, and this update matches nothing
            with self.connect() as conn:
                res = conn.execute(
                    leases.update()
                    .where(
                        leases.c.campaign == campaign,
                        leases.c.expires_at == row["expires_at"],
                        leases.c.pid == row["pid"],
                    )
                    .values(**me)
                )
            if res.rowcount == 1:
                return None
        held = self.lease_of(campaign)
        if held is None:
            raise JournalError(
                f"campaign {campaign!r}: its lease kept changing hands; try again"
            )
        return held

    def _row(self, campaign: str) -> Mapping[str, Any] | None:
        with self.connect() as conn:
            row = (
                conn.execute(sa.select(leases).where(leases.c.campaign == campaign))
                .mappings()
                .first()
            )
        return dict(row) if row is not None else None

    def lease_of(self, campaign: str) -> Holder | None:
        """The live holder of ``campaign``'s lease, if any."""
        row = self._row(campaign)
        return None if row is None or _dead(row) else _holder(row)

    def live_leases(self) -> list[Holder]:
        with self.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(leases)).mappings()]
        return [_holder(r) for r in rows if not _dead(r)]

    def renew_lease(self, campaign: str, run_id: str | None = None) -> bool:
        """False when this process no longer holds the lease."""
        values: dict[str, Any] = {"expires_at": _expiry()}
        if run_id is not None:
            values["run_id"] = run_id
        with self.connect() as conn:
            res = conn.execute(
                leases.update()
                .where(
                    leases.c.campaign == campaign,
                    leases.c.pid == os.getpid(),
                    leases.c.host == socket.gethostname(),
                )
                .values(**values)
            )
            return bool(res.rowcount)

    def release_lease(self, campaign: str) -> None:
        with self.connect() as conn:
            conn.execute(
                leases.delete().where(
                    leases.c.campaign == campaign,
                    leases.c.pid == os.getpid(),
                    leases.c.host == socket.gethostname(),
                )
            )


class Lease:
    """A held lease, renewed by a thread until ``release``."""

    def __init__(self, journal: LeaseRecords, campaign: str) -> None:
        self.journal = journal
        self.campaign = campaign
        self._run_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew, name=f"lease:{campaign}", daemon=True
        )
        self._thread.start()

    def bind(self, run_id: str) -> None:
        """Name the run this lease is sending (``status`` shows it)."""
        self._run_id = run_id
        self.journal.renew_lease(self.campaign, run_id)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW):
            # a busy journal: the next renewal, well within TTL, retries
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self.journal.renew_lease(self.campaign, self._run_id)

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(sa.exc.SQLAlchemyError):  # else it expires by itself
            self.journal.release_lease(self.campaign)
