"""Messages: the plan, the intents and outcomes the writer does not batch, and
what reports and reconciliation learn afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from runner.journal.store import Store, now_iso
from runner.journal.tables import message_history, messages, texts


class MessageRecords(Store):
    def message_states(self, run_id: str, step_id: str) -> dict[str, str]:
        """phone -> status for a step: what a resumed send must not redo."""
        with self.connect() as conn:
            rows = conn.execute(
                sa.select(messages.c.phone, messages.c.status).where(
                    messages.c.run_id == run_id, messages.c.step_id == step_id
                )
            )
            return {str(phone): str(status) for phone, status in rows}

    def planned_phones(
        self, run_id: str, step_id: str, phones: Sequence[str]
    ) -> set[str]:
        """Which of ``phones`` already have a message in the step (a resumed
        plan asks a batch at a time, not for every number the step has)."""
        if not phones:
            return set()
        with self.connect() as conn:
            return {
                str(p)
                for (p,) in conn.execute(
                    sa.select(messages.c.phone).where(
                        messages.c.run_id == run_id,
                        messages.c.step_id == step_id,
                        messages.c.phone.in_(list(phones)),
                    )
                )
            }

    def queued(
        self, run_id: str, step_id: str, after_seq: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """The next planned, never-called messages: (seq, phone, text, segments, row)."""
        q = (
            sa.select(
                messages.c.seq,
                messages.c.phone,
                texts.c.text,
                messages.c.segments,
                messages.c.source_row,
            )
            .join_from(messages, texts, texts.c.id == messages.c.text_id)
            .where(
                messages.c.run_id == run_id,
                messages.c.step_id == step_id,
                messages.c.seq > after_seq,
                messages.c.status == "queued",
            )
            .order_by(messages.c.seq)
            .limit(limit)
        )
        with self.connect() as conn:
            return [tuple(r) for r in conn.execute(q)]

    def resend(
        self,
        run_id: str,
        step_id: str,
        statuses: Sequence[str],
        reason: str,
        *,
        phones: Sequence[str] | None = None,
        error_kinds: Sequence[str] | None = None,
        provider: str | None = None,
    ) -> int:
        """Queue messages again (a retry, a resend of unknown outcomes, a report
        that shows one was never sent), keeping each earlier outcome in
        ``message_history`` with ``reason``. Returns how many."""
        where = [
            messages.c.run_id == run_id,
            messages.c.step_id == step_id,
            messages.c.status.in_(list(statuses)),
        ]
        if phones is not None:
            where.append(messages.c.phone.in_(list(phones)))
        if error_kinds is not None:
            where.append(messages.c.error_kind.in_(list(error_kinds)))
        archived = sa.select(
            messages.c.run_id,
            messages.c.step_id,
            messages.c.phone,
            sa.literal(now_iso()),
            sa.literal(reason),
            messages.c.status,
            messages.c.provider,
            messages.c.attempts,
            messages.c.provider_message_id,
            messages.c.error_kind,
            messages.c.error_code,
            messages.c.error_detail,
            messages.c.sent_at,
        ).where(*where)
        columns = [
            "run_id",
            "step_id",
            "phone",
            "at",
            "reason",
            "status",
            "provider",
            "attempts",
            "provider_message_id",
            "error_kind",
            "error_code",
            "error_detail",
            "sent_at",
        ]
        values: dict[str, Any] = {
            "status": "queued",
            "provider_message_id": None,
            "provider_status": None,
            "error_kind": None,
            "error_code": None,
            "error_detail": None,
            "sent_at": None,
            "claimed_by": None,
        }
        if provider is not None:
            values["provider"] = provider
        with self.connect() as conn:
            conn.execute(message_history.insert().from_select(columns, archived))
            res = conn.execute(messages.update().where(*where).values(**values))
            return int(res.rowcount)

    def cancel(
        self, run_id: str, step_id: str | None, phones: Sequence[str] | None, why: str
    ) -> int:
        """Queued messages that will never be sent become ``cancelled``."""
        where = [messages.c.run_id == run_id, messages.c.status == "queued"]
        if step_id is not None:
            where.append(messages.c.step_id == step_id)
        if phones is not None:
            if not phones:
                return 0
            where.append(messages.c.phone.in_(list(phones)))
        with self.connect() as conn:
            res = conn.execute(
                messages.update()
                .where(*where)
                .values(status="cancelled", error_kind="cancelled", error_detail=why)
            )
            return int(res.rowcount)

    def history_of(self, run_id: str, step_id: str, phone: str) -> list[dict[str, Any]]:
        """A message's earlier outcomes, oldest first."""
        h = message_history
        with self.connect() as conn:
            rows = conn.execute(
                sa.select(h)
                .where(h.c.run_id == run_id, h.c.step_id == step_id, h.c.phone == phone)
                .order_by(h.c.id)
            ).mappings()
            return [dict(r) for r in rows]

    def history_for(self, run_id: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Every earlier outcome in the run, per (step, phone), oldest first."""
        h = message_history
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        with self.connect() as conn:
            rows = conn.execute(
                sa.select(h).where(h.c.run_id == run_id).order_by(h.c.id)
            ).mappings()
            for r in rows:
                found.setdefault((r["step_id"], r["phone"]), []).append(dict(r))
        return found

    def max_seq(self, run_id: str, step_id: str) -> int:
        with self.connect() as conn:
            return int(
                conn.scalar(  # type: ignore[arg-type]
                    sa.select(sa.func.coalesce(sa.func.max(messages.c.seq), 0)).where(
                        messages.c.run_id == run_id, messages.c.step_id == step_id
                    )
                )
            )

    def record_deliveries(
        self,
        run_id: str,
        step_id: str,
        updates: Sequence[tuple[str, str, str, str | None]],
    ) -> None:
        """(phone, delivery_status, raw_code, at) from a report."""
        if not updates:
            return
        stmt = (
            messages.update()
            # by the number, the run and step in a form no index can use: on
            # PostgreSQL a new run's rows have no statistics yet, and a match on
            # (run_id, step_id, phone) may be planned as a scan of the step's
            # rows per report line (the writer's outcomes are found so too)
            .where(
                messages.c.phone == sa.bindparam("p_phone"),
                messages.c.run_id + "/" + messages.c.step_id == f"{run_id}/{step_id}",
            )
            .values(
                delivery_status=sa.bindparam("p_status"),
                delivery_code=sa.bindparam("p_code"),
                delivery_at=sa.bindparam("p_at"),
            )
        )
        with self.connect() as conn:
            conn.execute(
                stmt,
                [
                    {
                        "p_phone": p,
                        "p_status": s,
                        "p_code": c,
                        "p_at": a,
                    }
                    for p, s, c, a in updates
                ],
            )

    def reconcile(
        self,
        run_id: str,
        step_id: str,
        phone: str,
        status: str,
        message_id: str | None,
        detail: str,
    ) -> None:
        """Settle an ``unknown`` message from the provider's own record: ``sent``,
        or ``queued`` again (its unknown outcome kept in its history)."""
        if status == "queued":
            self.resend(run_id, step_id, ["unknown"], detail, phones=[phone])
            return
        with self.connect() as conn:
            conn.execute(
                messages.update()
                .where(
                    messages.c.run_id == run_id,
                    messages.c.step_id == step_id,
                    messages.c.phone == phone,
                )
                .values(
                    status=status,
                    provider_message_id=message_id,
                    error_kind=None if status == "sent" else "reconciled",
                    error_code=None,
                    error_detail=detail,
                )
            )
