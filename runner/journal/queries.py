"""The read queries that history, show, status and the engine share."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runner.journal.store import Store
from runner.journal.tables import (
    MESSAGE_COLUMNS,
    OUTCOME_STATUSES,
    message_history,
    message_tallies,
    messages,
    messages_with_text,
    runs,
    steps,
)


@dataclass(frozen=True)
class MetricFigures:
    """What ``/metrics`` reports from the journal at each scrape."""

    # (campaign, provider, status, mode) -> n
    messages: dict[tuple[str, str, str, str], int]
    retries: dict[
        tuple[str, str], int
    ]  # (campaign, provider) -> attempts beyond the first
    step_spans: list[tuple[str, str, str]]  # (kind, started_at, finished_at)


@dataclass(frozen=True)
class Cause:
    """Messages of a step that ended the same way, and the first of them."""

    kind: str  # error_kind: template, rejected, transient, timeout, ...
    code: str  # the provider's code, or the template problem
    count: int
    first: str  # the first one's detail (which recipient, for a template)


class Reads(Store):
    def causes(
        self, run_id: str, step_id: str, status: str, limit: int = 5
    ) -> list[Cause]:
        """Why a step's messages with ``status`` ended so, the commonest first."""
        m = messages
        where = (m.c.run_id == run_id, m.c.step_id == step_id, *_status_is(status))
        with self.connect() as conn:
            groups = conn.execute(
                sa.select(
                    m.c.error_kind, m.c.error_code, sa.func.count(), sa.func.min(m.c.seq)
                )
                .where(*where)
                .group_by(m.c.error_kind, m.c.error_code)
                .order_by(sa.func.count().desc(), sa.func.min(m.c.seq))
                .limit(limit)
            ).all()
            out = []
            for kind, code, n, seq in groups:
                first = conn.scalar(
                    sa.select(m.c.error_detail).where(*where, m.c.seq == seq)
                )
                out.append(Cause(kind or "", code or "", int(n), first or ""))
            return out

    def count_failed(self, run_id: str, step_id: str, kind: str) -> int:
        """How many of a step's messages failed with ``error_kind`` ``kind``."""
        m = messages
        q = sa.select(sa.func.count()).where(
            m.c.run_id == run_id,
            m.c.step_id == step_id,
            *_status_is("failed"),
            m.c.error_kind == kind,
        )
        with self.connect() as conn:
            return int(conn.scalar(q) or 0)

    def list_runs(
        self, campaign: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        q = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        if campaign:
            q = q.where(runs.c.campaign == campaign)
        with self.connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
            for r in rows:
                r["counts"] = self.message_counts(r["id"], conn=conn)
                r["fired"] = self._fired(r["id"], conn)
        return rows

    def _fired(self, run_id: str, conn: Connection) -> int:
        """How many of a run's ``sent`` messages are fire steps' injected MOs."""
        t = message_tallies
        q = (
            sa.select(sa.func.coalesce(sa.func.sum(t.c.n), 0))
            .join(
                steps,
                sa.and_(steps.c.run_id == t.c.run_id, steps.c.step_id == t.c.step_id),
            )
            .where(t.c.run_id == run_id, t.c.status == "sent", steps.c.kind == "fire")
        )
        return int(conn.scalar(q) or 0)

    def message_counts(
        self, run_id: str, step_id: str | None = None, *, conn: Connection | None = None
    ) -> dict[str, int]:
        """A run's (or one step's) messages by status, from the counts the
        database keeps (runner.journal.tallies): no COUNT over the messages."""
        t = message_tallies
        q = sa.select(t.c.status, sa.func.sum(t.c.n)).where(t.c.run_id == run_id)
        if step_id is not None:
            q = q.where(t.c.step_id == step_id)
        q = q.group_by(t.c.status).having(sa.func.sum(t.c.n) != 0)
        if conn is None:
            with self.connect() as c:
                return {s: int(n) for s, n in c.execute(q)}
        return {s: int(n) for s, n in conn.execute(q)}

    def messages_for(
        self, run_id: str, step_id: str | None = None, status: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        q = (
            sa.select(*MESSAGE_COLUMNS)
            .select_from(messages_with_text)
            .where(messages.c.run_id == run_id)
        )
        if step_id is not None:
            q = q.where(messages.c.step_id == step_id)
        if status:
            q = q.where(messages.c.status.in_(list(status)))
        q = q.order_by(messages.c.step_id, messages.c.created_at, messages.c.phone)
        with self.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def pins_sent(self, run_id: str, phone: str) -> list[dict[str, Any]]:
        """The PINs a run sent ``phone`` (their hashes), the latest first."""
        q = (
            sa.select(
                messages.c.step_id,
                messages.c.secret_digest,
                messages.c.sent_at,
                steps.c.detail,
            )
            .join(
                steps,
                sa.and_(
                    steps.c.run_id == messages.c.run_id,
                    steps.c.step_id == messages.c.step_id,
                ),
                isouter=True,
            )
            .where(
                messages.c.run_id == run_id,
                messages.c.phone == phone,
                messages.c.status == "sent",
                messages.c.secret_digest.is_not(None),
            )
            .order_by(messages.c.sent_at.desc())
        )
        with self.connect() as conn:
            return [
                {**dict(r), "detail": json.loads(r["detail"] or "{}")}
                for r in conn.execute(q).mappings()
            ]

    def messages_of(
        self, phone: str, campaign: str | None = None
    ) -> list[dict[str, Any]]:
        """Every message to one number (of ``campaign``), each with its earlier
        outcomes (``history``, oldest first)."""
        q = (
            sa.select(*MESSAGE_COLUMNS)
            .select_from(messages_with_text)
            .where(messages.c.phone == phone)
        )
        if campaign is not None:
            q = q.where(
                messages.c.run_id.in_(
                    sa.select(runs.c.id).where(runs.c.campaign == campaign)
                )
            )
        h = message_history
        with self.connect() as conn:
            found = [dict(r) for r in conn.execute(q).mappings()]
            earlier: dict[tuple[str, str], list[dict[str, Any]]] = {}
            ids = sorted({m["run_id"] for m in found})
            rows = conn.execute(
                sa.select(h)
                .where(h.c.run_id.in_(ids), h.c.phone == phone)
                .order_by(h.c.id)
            ).mappings()
            for r in rows:
                earlier.setdefault((r["run_id"], r["step_id"]), []).append(dict(r))
        for m in found:
            m["history"] = earlier.get((m["run_id"], m["step_id"]), [])
        return found

    def runs_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Runs by id, each with ``steps``: step id -> (kind, position)."""
        if not ids:
            return {}
        with self.connect() as conn:
            found = {
                r["id"]: {**dict(r), "steps": {}}
                for r in conn.execute(
                    sa.select(runs).where(runs.c.id.in_(list(ids)))
                ).mappings()
            }
            for run_id, step_id, kind, position in conn.execute(
                sa.select(
                    steps.c.run_id, steps.c.step_id, steps.c.kind, steps.c.position
                ).where(steps.c.run_id.in_(list(ids)))
            ):
                found[run_id]["steps"][step_id] = (kind, position)
        return found

    def metric_figures(self) -> MetricFigures:
        t = message_tallies
        with self.connect() as conn:
            mode = sa.func.coalesce(runs.c.mode, "real")
            key = (runs.c.campaign, t.c.provider)
            by_status = conn.execute(
                sa.select(*key, t.c.status, mode, sa.func.sum(t.c.n))
                .join(runs, runs.c.id == t.c.run_id)
                .group_by(*key, t.c.status, mode)
                .having(sa.func.sum(t.c.n) != 0)
                .order_by(*key, t.c.status, mode)
            )
            counts = {(c, p, s, m): int(n) for c, p, s, m, n in by_status}
            retries = {
                (c, p): int(n or 0)
                for c, p, n in conn.execute(
                    sa.select(*key, sa.func.sum(t.c.retries))
                    .join(runs, runs.c.id == t.c.run_id)
                    .group_by(*key)
                    .order_by(*key)
                )
            }
            spans = [
                (k, s, f)
                for k, s, f in conn.execute(
                    sa.select(
                        steps.c.kind, steps.c.started_at, steps.c.finished_at
                    ).where(
                        steps.c.started_at.is_not(None), steps.c.finished_at.is_not(None)
                    )
                )
            ]
        return MetricFigures(counts, retries, spans)


def _status_is(status: str) -> tuple[Any, ...]:
    """``status = X``, and for an outcome status the partial index's own
    condition too, so that the database reads that index (SQLite uses a partial
    index only for a query that states its WHERE)."""
    cond: tuple[Any, ...] = (messages.c.status == status,)
    if status in OUTCOME_STATUSES:
        cond += (_OUTCOMES,)
    return cond


# as literals: a bound parameter list does not match the index's condition
_OUTCOMES = sa.text(
    "messages.status IN (" + ", ".join(f"'{s}'" for s in OUTCOME_STATUSES) + ")"
)
