"""``campaign-runner status``: next scheduled runs and runs in progress.

Everything comes from the journal (the daemon's ``apscheduler_jobs`` table and
the ``runs`` table) plus the lock file, so it works whether or not a daemon is
running, and from another shell than the daemon's.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from runner.errors import JournalError, UsageError
from runner.journal.store import Journal, default_path, runs

JOBS_TABLE = "apscheduler_jobs"  # the daemon's SQLAlchemyJobStore table


# -- one daemon per journal ------------------------------------------------------------


def lock_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".lock")


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class StateLock:
    """An exclusive ``flock`` on ``<journal>.lock`` holding the owner's pid.

    The kernel drops it when the process dies (even by ``kill -9``), so a stale
    file never blocks a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise JournalError(f"cannot create the lock {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f" (pid {pid})" if pid else ""
            raise UsageError(
                f"another campaign-runner process{who} (a daemon or a run) owns this "
                f"journal: lock {self.path} is held; wait for it or use another --state"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_owner(path: Path) -> tuple[bool, int | None]:
    """(a daemon holds the lock, its pid) without taking or creating the lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False, None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True, _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)


# -- status -----------------------------------------------------------------------------


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
    status: str  # running | interrupted (resumable)
    started_at: str
    counts: dict[str, int]


@dataclass(frozen=True)
class Status:
    daemon_running: bool
    daemon_pid: int | None
    scheduled: tuple[Scheduled, ...]
    in_progress: tuple[InProgress, ...]


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
                .where(runs.c.status.in_(["running", "interrupted"]))
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
            )
            for r in rows
        ]


def read_status(state: Path) -> Status:
    running, pid = lock_owner(lock_path(state))
    journal = Journal(state)
    try:
        return Status(
            running,
            pid,
            tuple(scheduled_runs(journal)),
            tuple(runs_in_progress(journal)),
        )
    finally:
        journal.close()


def show_status(state: str | None, fmt: str, out: TextIO) -> int:
    """Print the daemon's schedule and the unfinished runs; 0 unless no journal."""
    path = Path(state) if state else default_path()
    if not path.exists():
        raise UsageError(f"no journal at {path} (nothing has run yet, or pass --state)")
    status = read_status(path)
    if fmt == "json":
        json.dump(_as_json(status), out, indent=2, default=str)
        out.write("\n")
        return 0
    who = f" (pid {status.daemon_pid})" if status.daemon_pid else ""
    out.write(f"daemon: {'running' + who if status.daemon_running else 'not running'}\n")
    out.write(f"journal: {path}\n\n")
    if status.scheduled:
        out.write("next scheduled runs:\n")
        for s in status.scheduled:
            when = f"{s.next_run:%Y-%m-%d %H:%M:%S %Z}" if s.next_run else "paused"
            out.write(f"  {when}  {s.campaign}  {s.path}\n")
    else:
        out.write("next scheduled runs: none\n")
    if status.in_progress:
        out.write("runs in progress:\n")
        for r in status.in_progress:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
            note = " (resumable)" if r.status == "interrupted" else ""
            out.write(
                f"  {r.run_id}  {r.campaign}  {r.status}{note}  since {r.started_at}"
                + (f"  [{counts}]" if counts else "")
                + "\n"
            )
    else:
        out.write("runs in progress: none\n")
    return 0


def _as_json(status: Status) -> dict[str, Any]:
    return {
        "daemon": {"running": status.daemon_running, "pid": status.daemon_pid},
        "scheduled": [
            {
                **asdict(s),
                "next_run": s.next_run.isoformat() if s.next_run else None,
            }
            for s in status.scheduled
        ],
        "in_progress": [asdict(r) for r in status.in_progress],
    }
