"""One scheduled APScheduler job per valid, scheduled campaign file.

The campaign-level schedule (``cron:`` or ``at:``) becomes a trigger here; a
step's own timing is the engine's (``runner.engine.scheduler``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from apscheduler.events import JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from runner.daemon.watch import FolderScanner
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.tables import runs
from runner.loader.load import load
from runner.model.campaign import Campaign, Schedule

LATE_AFTER = 2.0  # seconds after its time a fire counts as late (schedule.late)


def campaign_trigger(schedule: Schedule, tz: tzinfo) -> BaseTrigger:
    """``cron:`` in the campaign's timezone, or a one-off ``at:``."""
    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron, timezone=tz)
    if schedule.at is not None:
        return DateTrigger(run_date=schedule.at)
    raise ValueError("a schedule needs cron or at")


def grace_seconds(schedule: Schedule, default: timedelta) -> int:
    """APScheduler wants a positive whole number of seconds."""
    grace = schedule.misfire_grace_time or default
    return max(1, round(grace.total_seconds()))


class CampaignSchedules:
    """Keeps one job per valid, scheduled campaign file of the folders.

    The job id is the file's resolved path, its name the campaign's. A job whose
    trigger, grace and coalescing are unchanged is left alone, so after a restart
    a time missed while the daemon was down still meets the misfire policy.
    """

    def __init__(
        self,
        scheduler: BaseScheduler,
        journal: Journal,
        log: EventLog,
        err: TextIO,
        *,
        folders: Sequence[Path],
        fire_ref: str,
        misfire_grace: timedelta,
        sandbox: bool = False,
    ) -> None:
        self.scheduler = scheduler
        self.journal = journal
        self.log = log
        self.err = err
        self.scanner = FolderScanner(folders)
        self.fire_ref = fire_ref  # "module:function" (the job store pickles jobs)
        self.misfire_grace = misfire_grace
        self.sandbox = sandbox
        self.names: dict[str, str] = {}  # job id (the file) -> campaign name
        self.wanted: set[str] = set()  # job ids the folders ask for
        # files refused because an earlier file has their campaign name
        self.duplicates: dict[str, str] = {}

    def rescan(self, *, full: bool = False) -> None:
        """Apply what changed in the folders; ``full`` reconsiders every file."""
        if full:
            self.scanner.known.clear()
        try:
            changes = self.scanner.scan()
        except OSError as e:
            self.log.emit("watch.error", error=f"{type(e).__name__}: {e.strerror}")
            return
        for path in changes.removed:
            self.duplicates.pop(str(path), None)
            self._unschedule(str(path), "file deleted")
        for path in (*changes.added, *changes.changed):
            self._consider(path)
        for dup in list(self.duplicates):  # the file that held its name may be gone
            if self._holder_of(self.duplicates[dup], dup) is None:
                self._consider(Path(dup))
        if full:  # jobs left from files that are gone, or from other folders
            for job in self.scheduler.get_jobs():
                if job.id not in self.wanted:
                    self.names.setdefault(job.id, job.name)
                    self._unschedule(job.id, "not in the watched folders")

    def _consider(self, path: Path) -> None:
        result = load(path, env=os.environ)
        for p in result.problems:
            if self.sandbox and p.message.startswith("environment variable"):
                continue  # the sandbox gives unset credentials stand-in values
            self.err.write(p.format() + "\n")
        self.err.flush()
        campaign = result.campaign
        self.duplicates.pop(str(path), None)
        holder = None if campaign is None else self._holder_of(campaign.name, str(path))
        if campaign is not None and holder is not None:
            # the name is the campaign's identity: two files would send it twice
            self.duplicates[str(path)] = campaign.name
            self.err.write(
                f"{path}: campaign name {campaign.name!r} is also the name of "
                f"{holder}, which keeps running; this file is not scheduled "
                "(one name, one campaign: rename one of them)\n"
            )
            self.err.flush()
            self.log.emit(
                "campaign.duplicate_name",
                campaign=campaign.name,
                path=str(path),
                first=holder,
            )
            self._unschedule(str(path), "another file has its campaign name")
        elif campaign is None:
            self.log.emit(
                "campaign.invalid",
                path=str(path),
                problems=[p.format() for p in result.errors],
            )
            self._unschedule(str(path), "invalid")
        elif campaign.schedule is None:
            self.log.emit(
                "campaign.not_scheduled",
                campaign=campaign.name,
                path=str(path),
                reason="the file has no schedule: (use 'run' for a one-off)",
            )
            self._unschedule(str(path), "its schedule: was removed")
        else:
            try:
                self._schedule(path, campaign, campaign.schedule)
            except ValueError as e:  # the loader checks cron; belt and braces
                self.err.write(f"{path}: schedule: {e}\n")
                self._unschedule(str(path), "invalid schedule")

    def _holder_of(self, name: str, path: str) -> str | None:
        """Another file of the folders already scheduled under campaign ``name``."""
        for other in sorted(self.wanted):
            if other != path and self.names.get(other) == name:
                return other
        return None

    def _schedule(self, path: Path, campaign: Campaign, schedule: Schedule) -> None:
        job_id = str(path)
        trigger = campaign_trigger(schedule, campaign.timezone)
        grace = grace_seconds(schedule, self.misfire_grace)
        self.names[job_id] = campaign.name
        existing = self.scheduler.get_job(job_id)
        if existing is not None and (
            repr(existing.trigger),
            existing.misfire_grace_time,
            existing.coalesce,
            existing.name,
        ) == (repr(trigger), grace, schedule.coalesce, campaign.name):
            self.wanted.add(job_id)  # same schedule: keep its next (or missed) time
            return
        if schedule.at is not None and self._ran_since(path, schedule.at):
            self._unschedule(job_id, "its one run (at:) has started already")
            return
        job = self.scheduler.add_job(
            self.fire_ref,
            trigger,
            args=[job_id],
            id=job_id,
            name=campaign.name,
            misfire_grace_time=grace,
            coalesce=schedule.coalesce,
            replace_existing=True,
        )
        self.wanted.add(job_id)
        self.log.emit(
            "campaign.scheduled",
            campaign=campaign.name,
            path=job_id,
            next_run=job.next_run_time.isoformat() if job.next_run_time else None,
            trigger=str(trigger),
            misfire_grace_time=grace,
            coalesce=schedule.coalesce,
        )

    def _unschedule(self, job_id: str, reason: str) -> None:
        self.wanted.discard(job_id)
        if self.scheduler.get_job(job_id) is None:
            return
        self.scheduler.remove_job(job_id)
        self.log.emit(
            "campaign.unscheduled",
            campaign=self.names.get(job_id),
            path=job_id,
            reason=reason,
        )

    def _ran_since(self, path: Path, at: datetime) -> bool:
        """Has a run of this file started at or after ``at`` (a one-off done)?"""
        since = at.astimezone(UTC).isoformat(timespec="milliseconds")
        with self.journal.connect() as conn:
            return (
                conn.scalar(
                    sa.select(sa.func.count()).where(
                        runs.c.campaign_path == str(path), runs.c.started_at >= since
                    )
                )
                or 0
            ) > 0

    def on_missed(self, event: JobExecutionEvent) -> None:
        late = (datetime.now(UTC) - event.scheduled_run_time).total_seconds()
        self.log.emit(
            "schedule.misfired",
            campaign=self.names.get(event.job_id),
            path=event.job_id,
            scheduled=event.scheduled_run_time.isoformat(),
            late_by=round(late, 1),
            action="skipped: later than misfire_grace_time",
        )

    def on_executed(self, event: JobExecutionEvent) -> None:
        late = (datetime.now(UTC) - event.scheduled_run_time).total_seconds()
        if late > LATE_AFTER:
            self.log.emit(
                "schedule.late",
                campaign=self.names.get(event.job_id),
                path=event.job_id,
                scheduled=event.scheduled_run_time.isoformat(),
                late_by=round(late, 1),
                action="started late: within misfire_grace_time",
            )
