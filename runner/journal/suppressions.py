"""Recipients across campaigns: the suppression list and frequency caps.

Both act on a send step's ``queued`` rows (never called, so changing them is
safe) right before it dispatches, in one statement each: a suppressed number
becomes ``suppressed``, one over its cap ``capped`` (or ``deferred``, sent when
the cap allows). A number taken off the list goes back to ``queued`` the next
time its step dispatches. Rehearsals (mode ``sandbox``) keep their own STOPs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runner.journal.store import Store, now_iso
from runner.journal.tables import messages, runs, suppressions
from runner.model.campaign import FrequencyCap as Cap

SCOPES = ("marketing", "all")
COUNTED = ("sent", "pending", "reserved", "unknown")  # may reach the person
IN_FLIGHT = ("pending", "reserved")  # claimed: called now, or about to be


@dataclass(frozen=True)
class Suppression:
    phone: str
    mode: str  # real | sandbox
    scope: str  # marketing | all
    reason: str  # stop | optout | manual
    source: str
    added_at: str


def modes_for(mode: str) -> tuple[str, ...]:
    """The lists a run of ``mode`` honours: a rehearsal honours the real one too."""
    return ("real", "sandbox") if mode == "sandbox" else ("real",)


class SuppressionRecords(Store):
    def suppress(self, entries: Iterable[Suppression]) -> int:
        """Add entries; a number already listed keeps its first entry, widened
        to scope ``all`` when a new one says so. Returns how many are new."""
        rows = {(e.phone, e.mode): e for e in entries}
        if not rows:
            return 0
        added = 0
        with self.connect() as conn:
            known = {
                (p, m): scope
                for p, m, scope in conn.execute(
                    sa.select(
                        suppressions.c.phone, suppressions.c.mode, suppressions.c.scope
                    ).where(suppressions.c.phone.in_([p for p, _ in rows]))
                )
            }
            fresh = [e for key, e in rows.items() if key not in known]
            if fresh:
                conn.execute(
                    suppressions.insert(),
                    [
                        {
                            "phone": e.phone,
                            "mode": e.mode,
                            "scope": e.scope,
                            "reason": e.reason,
                            "source": e.source,
                            "added_at": e.added_at or now_iso(),
                        }
                        for e in fresh
                    ],
                )
                added = len(fresh)
            for (phone, mode), e in rows.items():
                if known.get((phone, mode)) == "marketing" and e.scope == "all":
                    conn.execute(
                        suppressions.update()
                        .where(suppressions.c.phone == phone, suppressions.c.mode == mode)
                        .values(scope="all")
                    )
        return added

    def unsuppress(self, phones: Sequence[str], mode: str = "real") -> int:
        with self.connect() as conn:
            res = conn.execute(
                suppressions.delete().where(
                    suppressions.c.phone.in_(list(phones)), suppressions.c.mode == mode
                )
            )
            return int(res.rowcount)

    def suppressions(self, mode: str | None = None) -> list[Suppression]:
        q = sa.select(suppressions).order_by(
            suppressions.c.added_at, suppressions.c.phone
        )
        if mode is not None:
            q = q.where(suppressions.c.mode == mode)
        with self.connect() as conn:
            return [Suppression(**dict(r)) for r in conn.execute(q).mappings()]

    def suppressions_of(self, phone: str) -> list[Suppression]:
        """One number's entries (a real one, a rehearsal's)."""
        q = sa.select(suppressions).where(suppressions.c.phone == phone)
        with self.connect() as conn:
            rows = conn.execute(q.order_by(suppressions.c.mode)).mappings()
            return [Suppression(**dict(r)) for r in rows]

    def apply_suppressions(
        self, run_id: str, step_id: str, mode: str, transactional: bool
    ) -> tuple[int, int]:
        """The step's queued rows whose number is listed become ``suppressed``;
        its suppressed rows whose number left the list are ``queued`` again.
        Returns (suppressed now, released)."""
        match = _listed(mode, transactional)
        step = (messages.c.run_id == run_id, messages.c.step_id == step_id)
        with self.connect() as conn:
            released = conn.execute(
                messages.update()
                .where(*step, messages.c.status == "suppressed", match.is_(None))
                .values(
                    status="queued", error_kind=None, error_code=None, error_detail=None
                )
            ).rowcount
            suppressed = conn.execute(_suppress(step, match)).rowcount
        return int(suppressed), int(released)

    def suppress_refused(
        self, run_id: str, step_id: str, codes: Sequence[str], mode: str, source: str
    ) -> int:
        """Numbers of the step the provider refused as opted out (``codes``)
        join the list (scope marketing). Returns how many are new."""
        if not codes:
            return 0
        with self.connect() as conn:
            phones = [
                str(p)
                for (p,) in conn.execute(
                    sa.select(messages.c.phone).where(
                        messages.c.run_id == run_id,
                        messages.c.step_id == step_id,
                        messages.c.status == "failed",
                        messages.c.error_code.in_(list(codes)),
                    )
                )
            ]
        return self.suppress(
            Suppression(p, _listed_mode(mode), "marketing", "optout", source, "")
            for p in phones
        )

    def apply_caps(
        self, run_id: str, step_id: str, mode: str, cap: Cap, now: datetime
    ) -> tuple[int, int]:
        """The step's queued rows whose number already got ``cap.count`` messages
        (or has them under way) in the window, from any other step or campaign
        of this mode, become ``capped`` (``deferred`` when the cap defers); its
        deferred rows the cap allows now are ``queued`` again. Returns (held
        now, released)."""
        got = _cap_count(run_id, step_id, mode, cap, now)
        step = (messages.c.run_id == run_id, messages.c.step_id == step_id)
        with self.connect() as conn:
            released = conn.execute(
                messages.update()
                .where(
                    *step,
                    messages.c.status == "deferred",
                    messages.c.error_kind == "deferred",
                    got < cap.count,
                )
                .values(status="queued", error_kind=None, error_detail=None)
            ).rowcount
            n = conn.execute(_cap(step, got, cap)).rowcount
        return int(n), int(released)

    def over_cap(
        self,
        run_id: str,
        step_id: str,
        mode: str,
        cap: Cap,
        phones: Sequence[str],
        now: datetime,
    ) -> set[str]:
        """Of the step's just-claimed ``phones``, those the cap forbids now.

        The plan-time hold cannot see two campaigns planning at once; this runs
        on the claimed rows, right before their calls. A message sent (or maybe
        sent) counts; one claimed by another send counts when it was claimed
        first (``sent_at``, then run and step, as a total order), so of two
        claims racing for one number exactly one goes out.
        """
        if not phones:
            return set()
        since = (now - cap.window).isoformat(timespec="milliseconds")
        other = messages.alias("other")
        first = sa.or_(
            other.c.sent_at < messages.c.sent_at,
            sa.and_(
                other.c.sent_at == messages.c.sent_at,
                sa.tuple_(other.c.run_id, other.c.step_id)
                < sa.tuple_(messages.c.run_id, messages.c.step_id),
            ),
        )
        got = (
            sa.select(sa.func.count())
            .select_from(other.join(runs, runs.c.id == other.c.run_id))
            .where(
                other.c.phone == messages.c.phone,
                other.c.sent_at >= since,
                runs.c.mode == mode,
                sa.not_(sa.and_(other.c.run_id == run_id, other.c.step_id == step_id)),
                sa.or_(
                    other.c.status.in_(("sent", "unknown")),
                    sa.and_(other.c.status.in_(IN_FLIGHT), first),
                ),
            )
            .scalar_subquery()
        )
        q = sa.select(messages.c.phone).where(
            messages.c.run_id == run_id,
            messages.c.step_id == step_id,
            messages.c.phone.in_(list(phones)),
            got >= cap.count,
        )
        with self.connect() as conn:
            return {str(p) for p in conn.scalars(q)}

    def next_cap_release(
        self, run_id: str, step_id: str, mode: str, cap: Cap, now: datetime
    ) -> datetime | None:
        """When the step's earliest deferred number may be sent: the oldest
        message counted against it leaves the window then (None: none waits)."""
        other = messages.alias("other")
        deferred = sa.select(messages.c.phone).where(
            messages.c.run_id == run_id,
            messages.c.step_id == step_id,
            messages.c.status == "deferred",
            messages.c.error_kind == "deferred",
        )
        q = (
            sa.select(other.c.phone, sa.func.min(other.c.sent_at))
            .select_from(other.join(runs, runs.c.id == other.c.run_id))
            .where(
                other.c.phone.in_(deferred),
                other.c.status.in_(COUNTED),
                other.c.sent_at >= (now - cap.window).isoformat(timespec="milliseconds"),
                runs.c.mode == mode,
                sa.not_(sa.and_(other.c.run_id == run_id, other.c.step_id == step_id)),
            )
            .group_by(other.c.phone)
        )
        with self.connect() as conn:
            oldest = [str(at) for _, at in conn.execute(q) if at]
        if not oldest:
            return None
        return datetime.fromisoformat(min(oldest)) + cap.window


class ZoneRecords(Store):
    """A send step whose window is on each recipient's clock: the messages of
    zones where it is closed wait ``deferred`` (kind ``window``)."""

    def step_zones(self, run_id: str, step_id: str) -> set[str]:
        """The zones of the step's messages still to send (queued or waiting)."""
        q = (
            sa.select(messages.c.zone)
            .where(
                messages.c.run_id == run_id,
                messages.c.step_id == step_id,
                sa.or_(
                    messages.c.status == "queued",
                    sa.and_(
                        messages.c.status == "deferred",
                        messages.c.error_kind == "window",
                    ),
                ),
            )
            .distinct()
        )
        with self.connect() as conn:
            return {str(z) for (z,) in conn.execute(q) if z}

    def apply_zones(
        self, run_id: str, step_id: str, open_zones: Iterable[str], why: str
    ) -> tuple[int, int]:
        """Queued rows of a closed zone wait; waiting rows of an open one are
        queued again. Returns (held now, released)."""
        opened = sorted(open_zones)
        step = (messages.c.run_id == run_id, messages.c.step_id == step_id)
        is_open = messages.c.zone.in_(opened) if opened else sa.false()
        with self.connect() as conn:
            released = conn.execute(
                messages.update()
                .where(
                    *step,
                    messages.c.status == "deferred",
                    messages.c.error_kind == "window",
                    is_open,
                )
                .values(status="queued", error_kind=None, error_detail=None)
            ).rowcount
            held = conn.execute(
                messages.update()
                .where(*step, messages.c.status == "queued", sa.not_(is_open))
                .values(status="deferred", error_kind="window", error_detail=why)
            ).rowcount
        return int(held), int(released)


@dataclass
class BatchHold:
    """What ``apply_suppressions`` and ``apply_caps`` do to a whole step, done to
    the rows a plan inserts while the step already sends, in the transaction
    that inserts them: no claim ever sees such a row before it is held."""

    run_id: str
    step_id: str
    mode: str
    transactional: bool
    cap: Cap | None
    clock: Callable[[], datetime]
    suppressed: int = 0
    capped: int = 0  # or deferred, when the cap defers

    def __call__(self, conn: Connection, first_seq: int, last_seq: int) -> None:
        rows = (
            messages.c.run_id == self.run_id,
            messages.c.step_id == self.step_id,
            messages.c.seq.between(first_seq, last_seq),
        )
        match = _listed(self.mode, self.transactional)
        self.suppressed += int(conn.execute(_suppress(rows, match)).rowcount)
        if self.cap is not None:
            got = _cap_count(self.run_id, self.step_id, self.mode, self.cap, self.clock())
            self.capped += int(conn.execute(_cap(rows, got, self.cap)).rowcount)


def _listed(mode: str, transactional: bool) -> sa.ScalarSelect[str]:
    """The reason a message's number is on a list a run of ``mode`` honours."""
    listed: sa.ColumnElement[bool] = suppressions.c.mode.in_(modes_for(mode))
    if transactional:  # a marketing-only STOP spares a PIN the person asked for
        listed = sa.and_(listed, suppressions.c.scope == "all")
    return (
        sa.select(suppressions.c.reason)
        .where(suppressions.c.phone == messages.c.phone, listed)
        .limit(1)
        .scalar_subquery()
    )


def _suppress(
    rows: tuple[sa.ColumnElement[bool], ...], match: sa.ScalarSelect[str]
) -> sa.Update:
    """``rows`` still queued whose number is listed become ``suppressed``."""
    return (
        messages.update()
        .where(*rows, messages.c.status == "queued", match.is_not(None))
        .values(
            status="suppressed",
            error_kind="suppressed",
            error_code=match,
            error_detail="on the suppression list",
        )
    )


def _cap_count(
    run_id: str, step_id: str, mode: str, cap: Cap, now: datetime
) -> sa.ScalarSelect[int]:
    """A message's number's messages in the cap's window, from any other step or
    campaign of ``mode``."""
    since = (now - cap.window).isoformat(timespec="milliseconds")
    other = messages.alias("other")
    return (
        sa.select(sa.func.count())
        .select_from(other.join(runs, runs.c.id == other.c.run_id))
        .where(
            other.c.phone == messages.c.phone,
            other.c.status.in_(COUNTED),
            other.c.sent_at >= since,
            runs.c.mode == mode,
            sa.not_(sa.and_(other.c.run_id == run_id, other.c.step_id == step_id)),
        )
        .scalar_subquery()
    )


def _cap(
    rows: tuple[sa.ColumnElement[bool], ...], got: sa.ScalarSelect[int], cap: Cap
) -> sa.Update:
    """``rows`` still queued whose number is at its cap become ``capped``
    (``deferred`` when the cap defers)."""
    held = "deferred" if cap.defer else "capped"
    return (
        messages.update()
        .where(*rows, messages.c.status == "queued", got >= cap.count)
        .values(
            status=held, error_kind=held, error_detail=f"over the frequency cap {cap}"
        )
    )


def _listed_mode(mode: str) -> str:
    """A run's automatic entries go to its own list (a test send's to the real)."""
    return "sandbox" if mode == "sandbox" else "real"


__all__ = [
    "COUNTED",
    "SCOPES",
    "BatchHold",
    "Suppression",
    "SuppressionRecords",
    "ZoneRecords",
    "modes_for",
]
