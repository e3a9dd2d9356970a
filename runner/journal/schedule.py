"""What the daemon has scheduled and which runs are unfinished, read from the journal.

The daemon's APScheduler job store lives in the journal database
(``apscheduler_jobs``), so ``status`` reads it from any shell, daemon or not.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import sqlalchemy as sa

from runner.journal.journal import Journal
from runner.journal.tables import runs

JOBS_TABLE = "apscheduler_jobs"  # the daemon's SQLAlchemyJobStore table


@dataclass(frozen=True)
class Scheduled:
    """One campaign file the daemon will start; ``next_run`` None means paused."""

    path: str
    campaign: str
    next_run: datetime | None
    trigger: str


@dataclass(frozen=True)
class InProgress:
    run_id: str
    campaign: str
    path: str
    status: str  # running | paused | interrupted (resumable)
    started_at: str
    counts: dict[str, int]
    mode: str = "real"  # real | sandbox (a rehearsal)
    control: str | None = None  # paused | cancelled: asked from a terminal
    control_by: str | None = None
    control_at: str | None = None


def _job_details(state: bytes | None) -> tuple[str, str, tzinfo | None]:
    """(campaign name, trigger text, trigger timezone) from a stored job.

    The job store pickles ``Job.__getstate__()``: a dict whose trigger needs
    APScheduler's classes only. The journal is owner-only, as is the daemon's
    own unpickling of it.
    """
    try:
        job = pickle.loads(state or b"")
        trigger = job.get("trigger")
        return (
            str(job.get("name") or ""),
            str(trigger),
            getattr(trigger, "timezone", None),
        )
    except Exception:  # an unreadable job is still listed, by its file
        return "", "", None


def scheduled_runs(journal: Journal) -> list[Scheduled]:
    with journal.connect() as conn:
        if not sa.inspect(conn).has_table(JOBS_TABLE):
            return []
        rows = conn.execute(
            sa.text(f"SELECT id, next_run_time, job_state FROM {JOBS_TABLE}")
        ).all()
    out = []
    for job_id, next_ts, state in rows:
        name, trigger, tz = _job_details(state)
        when = None
        if next_ts is not None:
            when = datetime.fromtimestamp(float(next_ts), UTC)
            when = when.astimezone(tz) if tz is not None else when
        out.append(Scheduled(str(job_id), name or Path(job_id).stem, when, trigger))
    out.sort(
        key=lambda s: (s.next_run is None, s.next_run or datetime.max.replace(tzinfo=UTC))
    )
    return out


def runs_in_progress(journal: Journal) -> list[InProgress]:
    with journal.connect() as conn:
        rows = (
            conn.execute(
                sa.select(runs)
                .where(runs.c.status.in_(["running", "paused", "interrupted"]))
                .order_by(runs.c.started_at)
            )
            .mappings()
            .all()
        )
        return [
            InProgress(
                r["id"],
                r["campaign"],
                r["campaign_path"],
                r["status"],
                r["started_at"],
                journal.message_counts(r["id"], conn=conn),
                r["mode"] or "real",
                r["control"],
                r["control_by"],
                r["control_at"],
            )
            for r in rows
        ]
