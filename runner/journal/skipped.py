"""The recipient rows a send step's plan left out (``skipped_rows``), and why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from runner.journal.store import Store
from runner.journal.tables import runs, skipped_rows


class SkippedRecords(Store):
    def forget_skipped(self, run_id: str, step_id: str) -> None:
        """A step planned again (a resume, a changed file) tells them anew."""
        t = skipped_rows
        with self.connect() as conn:
            conn.execute(t.delete().where(t.c.run_id == run_id, t.c.step_id == step_id))

    def skipped_for(
        self,
        run_id: str,
        step_id: str | None = None,
        reasons: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """A run's left-out rows (of one step, for some reasons), in file order."""
        t = skipped_rows
        q = sa.select(t).where(t.c.run_id == run_id)
        if step_id is not None:
            q = q.where(t.c.step_id == step_id)
        if reasons:
            q = q.where(t.c.reason.in_(list(reasons)))
        with self.connect() as conn:
            rows = conn.execute(q.order_by(t.c.step_id, t.c.id)).mappings()
            return [dict(r) for r in rows]

    def skipped_of(
        self, phone: str | None, given: str, campaign: str | None = None
    ) -> list[dict[str, Any]]:
        """Every left-out row of a number (of ``campaign``'s runs): by its E.164
        form (indexed) or, when it has none, as it was written (an invalid row)."""
        t = skipped_rows
        q = sa.select(t).where(
            t.c.phone == phone if phone is not None else t.c.given == given
        )
        if campaign is not None:
            q = q.where(
                t.c.run_id.in_(sa.select(runs.c.id).where(runs.c.campaign == campaign))
            )
        with self.connect() as conn:
            return [dict(r) for r in conn.execute(q.order_by(t.c.id)).mappings()]
