"""Runs and steps: what the engine records as a campaign goes from step to step."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from runner.errors import UsageError
from runner.journal.store import Store, now_iso
from runner.journal.tables import runs, steps

# a run in these states can be continued (``run --resume``, the daemon's restart)
UNFINISHED = ("running", "paused", "interrupted", "failed", "unsettled")


@dataclass(frozen=True)
class Control:
    """What someone asked of a run from any terminal (``pause``/``cancel``)."""

    state: str | None  # paused | cancelled | None: carry on
    by: str | None = None
    at: str | None = None


class RunRecords(Store):
    def start_run(
        self,
        campaign: str,
        campaign_path: str,
        options: Mapping[str, Any],
        *,
        sandbox: str | None = None,
        fingerprint: Mapping[str, Any] | None = None,
        mode: str | None = None,
        occurrence: str | None = None,
    ) -> str:
        """A new run; ``sandbox`` (the emulators' address) makes it a rehearsal,
        ``mode="test"`` a test send (``campaign-runner test``)."""
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        try:
            self._insert_run(
                run_id,
                campaign,
                campaign_path,
                options,
                sandbox,
                fingerprint,
                mode or ("sandbox" if sandbox else "real"),
                occurrence,
            )
        except sa.exc.IntegrityError:
            raise UsageError(
                f"campaign {campaign!r}: occurrence {occurrence!r} already has a run "
                "(started at the same moment elsewhere?); run the same command again "
                "to continue it"
            ) from None
        return run_id

    def _insert_run(
        self,
        run_id: str,
        campaign: str,
        campaign_path: str,
        options: Mapping[str, Any],
        sandbox: str | None,
        fingerprint: Mapping[str, Any] | None,
        mode: str,
        occurrence: str | None,
    ) -> None:
        with self.connect() as conn:
            conn.execute(
                runs.insert().values(
                    id=run_id,
                    campaign=campaign,
                    campaign_path=campaign_path,
                    status="running",
                    started_at=now_iso(),
                    options=json.dumps(dict(options)),
                    mode=mode,
                    sandbox=sandbox,
                    fingerprint=json.dumps(dict(fingerprint or {})),
                    occurrence=occurrence,
                )
            )

    def set_fingerprint(self, run_id: str, fingerprint: Mapping[str, Any]) -> None:
        """What the run's queued messages are now rendered from."""
        with self.connect() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(fingerprint=json.dumps(dict(fingerprint)))
            )

    def finish_run(self, run_id: str, status: str, exit_code: int) -> None:
        with self.connect() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(status=status, finished_at=now_iso(), exit_code=exit_code)
            )

    def reopen_run(self, run_id: str, sandbox: str | None = None) -> None:
        with self.connect() as conn:
            values: dict[str, Any] = {
                "status": "running",
                "finished_at": None,
                "exit_code": None,
            }
            if sandbox is not None:  # a rehearsal's emulators are new each time
                values["sandbox"] = sandbox
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))

    def set_status(self, run_id: str, status: str) -> None:
        """A running run's status as it goes (``running`` <-> ``paused``)."""
        with self.connect() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(status=status))

    def request_control(self, run_id: str, state: str | None, by: str) -> None:
        """Ask the run's process to pause, cancel, or (``None``) carry on."""
        with self.connect() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(control=state, control_by=by, control_at=now_iso())
            )

    def control_of(self, run_id: str) -> Control:
        with self.connect() as conn:
            row = conn.execute(
                sa.select(runs.c.control, runs.c.control_by, runs.c.control_at).where(
                    runs.c.id == run_id
                )
            ).first()
        return Control(*row) if row is not None else Control(None)

    def get_run(self, run_id: str) -> Mapping[str, Any] | None:
        with self.connect() as conn:
            row = (
                conn.execute(sa.select(runs).where(runs.c.id == run_id))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def latest_run(
        self, campaign: str | None = None, *, tests: bool = True
    ) -> Mapping[str, Any] | None:
        """The run started last (of ``campaign``), whatever its mode (test sends
        aside unless ``tests``)."""
        q = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc())
        if campaign is not None:
            q = q.where(runs.c.campaign == campaign)
        if not tests:
            q = q.where(runs.c.mode != "test")
        with self.connect() as conn:
            row = conn.execute(q.limit(1)).mappings().first()
        return dict(row) if row else None

    def run_of_occurrence(
        self, campaign: str, occurrence: str, mode: str
    ) -> Mapping[str, Any] | None:
        """The latest run of ``campaign``'s ``occurrence`` in ``mode``; runs from
        before occurrences were recorded count as the one-off's."""
        match = runs.c.occurrence == occurrence
        if occurrence == "once":
            match = sa.or_(match, runs.c.occurrence.is_(None))
        with self.connect() as conn:
            row = (
                conn.execute(
                    sa.select(runs)
                    .where(runs.c.campaign == campaign, runs.c.mode == mode, match)
                    .order_by(runs.c.started_at.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def last_unfinished_run(self, campaign: str) -> str | None:
        with self.connect() as conn:
            return conn.scalar(
                sa.select(runs.c.id)
                .where(
                    runs.c.campaign == campaign,
                    runs.c.status.in_(list(UNFINISHED)),
                    runs.c.mode != "test",
                )
                .order_by(runs.c.started_at.desc())
                .limit(1)
            )

    def step_status(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's steps in the campaign's order."""
        with self.connect() as conn:
            rows = conn.execute(
                sa.select(steps)
                .where(steps.c.run_id == run_id)
                .order_by(steps.c.position, steps.c.started_at)
            ).mappings()
            return {
                r["step_id"]: {**dict(r), "detail": json.loads(r["detail"])} for r in rows
            }

    def start_step(
        self, run_id: str, step_id: str, kind: str, position: int | None = None
    ) -> None:
        with self.connect() as conn:
            existing = conn.scalar(
                sa.select(steps.c.status).where(
                    steps.c.run_id == run_id, steps.c.step_id == step_id
                )
            )
            values = {"status": "running", "started_at": now_iso(), "finished_at": None}
            if existing is None:
                conn.execute(
                    steps.insert().values(
                        run_id=run_id,
                        step_id=step_id,
                        kind=kind,
                        position=position,
                        **values,
                    )
                )
            else:
                conn.execute(
                    steps.update()
                    .where(steps.c.run_id == run_id, steps.c.step_id == step_id)
                    .values(**values)
                )

    def finish_step(
        self,
        run_id: str,
        step_id: str,
        status: str,
        detail: Mapping[str, Any],
        kind: str = "",
        position: int | None = None,
    ) -> None:
        with self.connect() as conn:
            res = conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.step_id == step_id)
                .values(
                    status=status,
                    finished_at=now_iso(),
                    detail=json.dumps(dict(detail), default=str),
                )
            )
            if res.rowcount == 0:
                conn.execute(
                    steps.insert().values(
                        run_id=run_id,
                        step_id=step_id,
                        kind=kind,
                        position=position,
                        status=status,
                        started_at=now_iso(),
                        finished_at=now_iso(),
                        detail=json.dumps(dict(detail), default=str),
                    )
                )
