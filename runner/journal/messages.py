"""Messages: the plan, the intents and outcomes the writer does not batch, and
what reports and reconciliation learn afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from runner.journal.store import Store
from runner.journal.tables import messages


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

    def queued(
        self, run_id: str, step_id: str, after_seq: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """The next planned, never-called messages: (seq, phone, text, segments, row)."""
        q = (
            sa.select(
                messages.c.seq,
                messages.c.phone,
                messages.c.text,
                messages.c.segments,
                messages.c.source_row,
            )
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

    def requeue(self, run_id: str, step_id: str, statuses: Sequence[str]) -> int:
        """Put messages back to ``queued`` (``--resend-unknown``: the user's choice)."""
        with self.connect() as conn:
            res = conn.execute(
                messages.update()
                .where(
                    messages.c.run_id == run_id,
                    messages.c.step_id == step_id,
                    messages.c.status.in_(list(statuses)),
                )
                .values(status="queued")
            )
            return int(res.rowcount)

    def max_seq(self, run_id: str, step_id: str) -> int:
        with self.connect() as conn:
            return int(
                conn.scalar(  # type: ignore[arg-type]
                    sa.select(sa.func.coalesce(sa.func.max(messages.c.seq), 0)).where(
                        messages.c.run_id == run_id, messages.c.step_id == step_id
                    )
                )
            )

    def mark_interrupted(self, run_id: str, step_id: str) -> int:
        """Intents with no outcome become ``unknown``: the call may have gone out."""
        with self.connect() as conn:
            res = conn.execute(
                messages.update()
                .where(
                    messages.c.run_id == run_id,
                    messages.c.step_id == step_id,
                    messages.c.status == "pending",
                )
                .values(
                    status="unknown",
                    error_kind="interrupted",
                    error_code="interrupted",
                    error_detail="the run stopped before the outcome was recorded",
                )
            )
            return int(res.rowcount)

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
            .where(
                messages.c.run_id == run_id,
                messages.c.step_id == step_id,
                messages.c.phone == sa.bindparam("p_phone"),
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
                    {"p_phone": p, "p_status": s, "p_code": c, "p_at": a}
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
        """Settle an ``unknown`` message from the provider's own record."""
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
