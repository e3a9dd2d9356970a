"""The processes sending a step together, in the journal.

Every process that sends has a row here (``workers``) it renews while it lives;
the claim on each ``pending`` message it took names it (``worker#n``, the n-th
send of that process), so a claim lasts exactly as long as its claimer: when the
row expires, or its process on this host is gone, the message's outcome is
unknown and is settled like any other unknown, never resent blindly.

A step sent by several processes has a ``shares`` row per process and provider,
from which each one takes its part of the provider's concurrency; its rate is
one ``rate_slots`` row they all reserve slots from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from runner.journal.instants import now_ms
from runner.journal.leases import RENEW, TTL, _dead, _expiry
from runner.journal.store import Store, now_iso
from runner.journal.tables import messages, rate_slots, runs, shares, steps, workers

INTERRUPTED = {
    "status": "unknown",
    "error_kind": "interrupted",
    "error_code": "interrupted",
    "error_detail": "the sender stopped before the outcome was recorded",
    "claimed_by": None,  # the claim is over: its outcome is unknown
}


@dataclass(frozen=True)
class ShareRow:
    run_id: str
    step_id: str
    provider: str
    claimer: str
    worker: str
    role: str  # driver | helper
    campaign: str
    joined_at: str
    in_flight: int


@dataclass(frozen=True)
class Joinable:
    """A send step another process drives, with messages left to claim."""

    run_id: str
    step_id: str
    provider: str
    campaign: str


class WorkerRecords(Store):
    # -- the process's own row ------------------------------------------------------

    def worker_up(self, worker: str) -> None:
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        with self.connect() as conn:
            conn.execute(workers.delete().where(workers.c.id == worker))
            conn.execute(
                workers.insert().values(
                    id=worker, started_at=now_iso(), expires_at=_expiry(), **me
                )
            )

    def renew_worker(self, worker: str) -> None:
        with self.connect() as conn:
            conn.execute(
                workers.update()
                .where(workers.c.id == worker)
                .values(expires_at=_expiry())
            )

    def worker_down(self, worker: str) -> None:
        with self.connect() as conn:
            conn.execute(workers.delete().where(workers.c.id == worker))
            conn.execute(shares.delete().where(shares.c.worker == worker))

    def live_workers(self) -> set[str]:
        with self.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(workers)).mappings()]
        return {r["id"] for r in rows if not _dead(r)}

    # -- claims ---------------------------------------------------------------------

    def settle_dead_claims(
        self, run_id: str, step_id: str, me: str = "", mine: Iterable[str] = ()
    ) -> int:
        """Pending messages whose claimer is gone become ``unknown``; reserved
        ones (claimed, certainly not called) are ``queued`` again.

        ``me`` is this process's worker and ``mine`` its sends still under way;
        its other claims (a send that ended without recording) are dead too.
        """
        mine = set(mine)
        with self.connect() as conn:
            claimers = [
                r[0]
                for r in conn.execute(
                    sa.select(messages.c.claimed_by)
                    .where(
                        messages.c.run_id == run_id,
                        messages.c.step_id == step_id,
                        messages.c.status.in_(("pending", "reserved")),
                    )
                    .distinct()
                )
            ]
        if not claimers:
            return 0
        alive = self.live_workers()

        def dead(claimer: str | None) -> bool:
            if claimer is None:
                return True  # claimed before claims were named
            worker = claimer.split("#")[0]
            if worker == me:
                return claimer not in mine
            return worker not in alive

        gone = [c for c in claimers if dead(c)]
        if not gone:
            return 0
        cond = [messages.c.claimed_by.in_([c for c in gone if c is not None])]
        if None in gone:
            cond.append(messages.c.claimed_by.is_(None))
        of_step = (messages.c.run_id == run_id, messages.c.step_id == step_id)
        with self.connect() as conn:
            conn.execute(
                messages.update()
                .where(*of_step, messages.c.status == "reserved", sa.or_(*cond))
                .values(status="queued", claimed_by=None, sent_at=None)
            )
            res = conn.execute(
                messages.update()
                .where(*of_step, messages.c.status == "pending", sa.or_(*cond))
                .values(**INTERRUPTED)
            )
            return int(res.rowcount)

    def pending_by_others(self, run_id: str, step_id: str, claimer: str) -> int:
        """Messages of the step claimed by other sends, their calls under way."""
        with self.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(messages)
                    .where(
                        messages.c.run_id == run_id,
                        messages.c.step_id == step_id,
                        messages.c.status == "pending",
                        sa.or_(
                            messages.c.claimed_by.is_(None),
                            messages.c.claimed_by != claimer,
                        ),
                    )
                ).scalar_one()
            )

    def queued_left(self, run_id: str, step_id: str) -> bool:
        with self.connect() as conn:
            return (
                conn.execute(
                    sa.select(messages.c.seq)
                    .where(
                        messages.c.run_id == run_id,
                        messages.c.step_id == step_id,
                        messages.c.status == "queued",
                    )
                    .limit(1)
                ).first()
                is not None
            )

    # -- shares ---------------------------------------------------------------------

    def join_share(self, row: ShareRow) -> None:
        values = dataclasses.asdict(row)
        with self.connect() as conn:
            conn.execute(
                shares.delete().where(
                    shares.c.run_id == row.run_id,
                    shares.c.step_id == row.step_id,
                    shares.c.provider == row.provider,
                    shares.c.claimer == row.claimer,
                )
            )
            conn.execute(shares.insert().values(expires_at=_expiry(), **values))

    def renew_share(self, row: ShareRow, in_flight: int) -> list[ShareRow]:
        """Renew this share; the live shares of its step and provider."""
        key = (
            shares.c.run_id == row.run_id,
            shares.c.step_id == row.step_id,
            shares.c.provider == row.provider,
        )
        with self.connect() as conn:
            conn.execute(
                shares.update()
                .where(*key, shares.c.claimer == row.claimer)
                .values(expires_at=_expiry(), in_flight=in_flight)
            )
            found = [
                dict(r) for r in conn.execute(sa.select(shares).where(*key)).mappings()
            ]
        alive = self.live_workers()
        now = now_iso()
        return [
            _share(r) for r in found if r["expires_at"] >= now and r["worker"] in alive
        ]

    def leave_share(self, row: ShareRow) -> None:
        with self.connect() as conn:
            conn.execute(
                shares.delete().where(
                    shares.c.run_id == row.run_id,
                    shares.c.step_id == row.step_id,
                    shares.c.provider == row.provider,
                    shares.c.claimer == row.claimer,
                )
            )

    def in_flight_by_worker(self) -> dict[str, int]:
        """Messages each live worker has in calls now (``status``)."""
        now = now_iso()
        with self.connect() as conn:
            rows = conn.execute(
                sa.select(shares.c.worker, sa.func.sum(shares.c.in_flight))
                .where(shares.c.expires_at >= now)
                .group_by(shares.c.worker)
            ).all()
        return {str(w): int(n or 0) for w, n in rows}

    def joinable(self, worker: str) -> list[Joinable]:
        """Send steps driven by another live process, with messages still queued
        and nobody asking them to pause or stop, that ``worker`` is not in."""
        now = now_iso()
        with self.connect() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    sa.select(shares)
                    .join(runs, runs.c.id == shares.c.run_id)
                    .join(
                        steps,
                        sa.and_(
                            steps.c.run_id == shares.c.run_id,
                            steps.c.step_id == shares.c.step_id,
                        ),
                    )
                    .where(
                        shares.c.expires_at >= now,
                        runs.c.status == "running",
                        runs.c.mode == "real",
                        runs.c.control.is_(None),
                        steps.c.status == "running",
                    )
                ).mappings()
            ]
        taken = {(r["run_id"], r["step_id"]) for r in rows if r["worker"] == worker}
        alive = self.live_workers()
        found: dict[tuple[str, str], Joinable] = {}
        for r in rows:
            key = (r["run_id"], r["step_id"])
            if r["role"] != "driver" or key in taken or r["worker"] not in alive:
                continue
            if self.queued_left(*key):
                found[key] = Joinable(
                    r["run_id"], r["step_id"], r["provider"], r["campaign"]
                )
        return list(found.values())

    def step_open(self, run_id: str, step_id: str) -> bool:
        """The run still sends this step, and nobody asked it to pause or stop."""
        with self.connect() as conn:
            row = conn.execute(
                sa.select(runs.c.status, runs.c.control, steps.c.status)
                .join(steps, steps.c.run_id == runs.c.id)
                .where(runs.c.id == run_id, steps.c.step_id == step_id)
            ).first()
        return (
            row is not None
            and row[0] == "running"
            and row[1] is None
            and row[2] == "running"
        )

    # -- a shared rate --------------------------------------------------------------

    def reserve_slots(self, key: str, n: int, interval: float) -> float:
        """Reserve ``n`` consecutive slots ``interval`` apart of the rate ``key``;
        seconds from now until the first (the journal's clock, so every machine
        agrees)."""
        span = n * interval
        with self.connect() as conn:
            if self.engine.dialect.name == "postgresql":
                now = float(
                    conn.exec_driver_sql(
                        "SELECT extract(epoch from clock_timestamp())"
                    ).scalar_one()
                )
                next_at = float(
                    conn.exec_driver_sql(
                        "INSERT INTO rate_slots (key, next_at) VALUES (%s, %s) "
                        "ON CONFLICT (key) DO UPDATE SET next_at = "
                        "greatest(rate_slots.next_at, %s) + %s RETURNING next_at",
                        (key, now + span, now, span),
                    ).scalar_one()
                )
            else:
                now = datetime.now(UTC).timestamp()
                row = conn.execute(
                    sa.select(rate_slots.c.next_at).where(rate_slots.c.key == key)
                ).first()
                next_at = max(row[0] if row else 0.0, now) + span
                if row is None:
                    conn.execute(rate_slots.insert().values(key=key, next_at=next_at))
                else:
                    conn.execute(
                        rate_slots.update()
                        .where(rate_slots.c.key == key)
                        .values(next_at=next_at)
                    )
        return next_at - span - now

    def push_slots(self, key: str, seconds: float) -> None:
        """No slot of ``key`` starts within ``seconds`` from now (a pause)."""
        at = datetime.now(UTC).timestamp() + seconds
        with self.connect() as conn:
            conn.execute(
                rate_slots.update()
                .where(rate_slots.c.key == key, rate_slots.c.next_at < at)
                .values(next_at=at)
            )


def _share(r: Mapping[str, Any]) -> ShareRow:
    return ShareRow(
        run_id=r["run_id"],
        step_id=r["step_id"],
        provider=r["provider"],
        claimer=r["claimer"],
        worker=r["worker"],
        role=r["role"],
        campaign=r["campaign"],
        joined_at=r["joined_at"],
        in_flight=int(r["in_flight"]),
    )


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, d = divmod(n, 36)
        out = digits[d] + out
    return out or "0"


class Worker:
    """This process's row, renewed by a thread; names each of its sends."""

    def __init__(self, journal: WorkerRecords) -> None:
        self.journal = journal
        # host:pid:start, the start as milliseconds in base 36: a claimed row
        # carries it until its outcome, and a row that grows splits its page
        # (an ISO start cost 27 bytes a message sent, issue 18)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{_base36(now_ms())}"
        self._n = itertools.count(1)
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        journal.worker_up(self.id)
        self._thread = threading.Thread(target=self._renew, name="worker", daemon=True)
        self._thread.start()

    def claimer(self) -> str:
        """A new send of this process: the name its claims carry until ``done``."""
        name = f"{self.id}#{next(self._n)}"
        with self._lock:
            self._active.add(name)
        return name

    def done(self, claimer: str) -> None:
        with self._lock:
            self._active.discard(claimer)

    def active(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW):
            # a busy journal: the next renewal, well within TTL, retries
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self.journal.renew_worker(self.id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self.journal.worker_down(self.id)


__all__ = ["TTL", "Joinable", "ShareRow", "Worker", "WorkerRecords"]
