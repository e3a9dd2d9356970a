"""``campaign-runner daemon``: a folder of campaigns, each started at its scheduled time.

APScheduler keeps one job per campaign file in the journal database
(``apscheduler_jobs``), so a restart keeps the schedule and applies the misfire
policy to whatever came due while the daemon was down. A job fires
``fire_campaign`` (stored by textual reference, since the job store pickles
jobs), which hands the run to its own thread: the file is loaded anew and
carried out by the same ``run_campaign`` as ``campaign-runner run``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO, cast

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from runner.campaign import Campaign, Schedule
from runner.engine import RunOptions, run_campaign
from runner.errors import CampaignError, RunnerError, UsageError, write_crash_log
from runner.eventlog import EventLog
from runner.execute import Settings, build_providers, open_state, resolve_options
from runner.journal import Journal, default_path, runs
from runner.metrics import Health, MetricsServer
from runner.secrets import Redactor
from runner.status import JOBS_TABLE
from runner.watch import FolderScanner, campaign_files

FIRE_REF = "runner.daemon:fire_campaign"
DOUBLE_DELIVERY = 0.5  # seconds within which a repeated stop signal is the same one
LATE_AFTER = 2.0  # seconds after its time a fire counts as late (schedule.late)


@dataclass(frozen=True)
class DaemonSettings:
    """The daemon's command line."""

    folders: tuple[Path, ...]
    state: Path | None = None  # journal; None: $CAMPAIGN_RUNNER_STATE or XDG state
    log: Path | None = None  # event log; None: events.jsonl beside the journal
    sandbox: bool = False
    http: str | None = None  # HOST:PORT for /healthz and /metrics
    log_format: str = "text"  # text (stderr) | json (stdout)
    misfire_grace: timedelta = timedelta(minutes=5)  # unless the campaign says
    poll: float = 2.0  # seconds between folder scans
    settle: float = 1.0  # sandbox: seconds before a delivery is final
    stop_timeout: float = 60.0  # SIGTERM: how long active runs get to wind down


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f" (pid {pid})" if pid else ""
            raise UsageError(
                f"another daemon{who} owns this journal: lock {self.path} is held"
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


# -- campaign schedules ----------------------------------------------------------------


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


_current: Daemon | None = None


def fire_campaign(path: str) -> None:
    """The scheduled job: start a run of the campaign file ``path`` (never blocks)."""
    daemon = _current
    if daemon is not None:
        daemon.fire(Path(path))


# -- logs ------------------------------------------------------------------------------

QUIET_ON_TERMINAL = frozenset({"message.sent"})  # a summary follows in step.finished


class _Echo(io.TextIOBase):
    """The event log's copy for people (text) or log shippers (JSON), line-flushed."""

    def __init__(self, stream: TextIO, human: bool) -> None:
        self.stream = stream
        self.human = human

    def write(self, s: str) -> int:
        text = human_line(s) if self.human else s
        if text:
            self.stream.write(text)
            self.stream.flush()
        return len(s)


def human_line(line: str) -> str:
    """One JSON event -> ``2026-11-23 08:00:01 run.started run=... campaign=...``."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    event = record.pop("event", "?")
    if event in QUIET_ON_TERMINAL:
        return ""
    ts = str(record.pop("ts", ""))[:19].replace("T", " ")
    parts = [ts, event]
    for key, value in record.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts) + "\n"


class _OneLine(logging.Filter):
    """A logged exception becomes one line: tracebacks go to crash logs, not screens."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_scheduler_logs() -> None:
    """APScheduler's own logs: errors only, one line each.

    Misses are reported as ``schedule.misfired`` events instead of its warnings.
    """
    top = logging.getLogger("apscheduler")
    if top.getEffectiveLevel() >= logging.WARNING:
        top.setLevel(logging.ERROR)
    for name in ("scheduler", "executors.default", "jobstores.default"):
        logging.getLogger(f"apscheduler.{name}").addFilter(_OneLine())


class _Redactors(Redactor):
    """Every run's redactor: the daemon's one event log hides all their secrets."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: tuple[Redactor, ...] = ()

    def include(self, redactor: Redactor) -> None:
        self._parts = (*self._parts, redactor)

    def __call__(self, text: str) -> str:
        for part in self._parts:
            text = part(text)
        return text


# -- the daemon ------------------------------------------------------------------------


@dataclass
class _Active:
    name: str
    stop: threading.Event
    thread: threading.Thread


class Daemon:
    """Folder scanning, the persistent schedule and the active runs."""

    def __init__(
        self,
        settings: DaemonSettings,
        journal: Journal,
        log: EventLog,
        redactors: _Redactors,
        err: TextIO,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.log = log
        self.redactors = redactors
        self.err = err
        self.scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=journal.engine, tablename=JOBS_TABLE)
            },
            # the job only hands the run to its own thread: two workers are plenty
            executors={"default": ThreadPoolExecutor(2)},
            job_defaults={"max_instances": 1},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.scheduler.add_listener(self._on_executed, EVENT_JOB_EXECUTED)
        self.scanner = FolderScanner(settings.folders)
        self._names: dict[str, str] = {}  # job id (the file) -> campaign name
        self._wanted: set[str] = set()  # job ids the folders ask for
        self._active: dict[Path, _Active] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._reload = False

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        """Scan, resume, then rescan every ``poll`` seconds until SIGTERM/SIGINT."""
        global _current
        _current = self
        # paused until the folders are reconciled: a job stored for a file that
        # has gone must not fire first
        self.scheduler.start(paused=True)
        try:
            self.rescan(full=True)
            self._resume_unfinished()
            self.scheduler.resume()
            self.log.emit(
                "daemon.started",
                pid=os.getpid(),
                folders=[str(f) for f in self.settings.folders],
                journal=str(self.journal.path),
                sandbox=self.settings.sandbox,
                campaigns=len(self._wanted),
            )
            while not self._stopping.is_set():
                self._wake.wait(self.settings.poll)
                self._wake.clear()
                if self._stopping.is_set():
                    break
                full, self._reload = self._reload, False
                if full:
                    self.log.emit("daemon.reload")
                try:
                    self.rescan(full=full)
                except Exception as e:  # keep serving the runs; try again next poll
                    self.log.emit(
                        "daemon.error", error=type(e).__name__, details=write_crash_log()
                    )
                self.log.flush()
            return self._shutdown()
        finally:
            _current = None

    @contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT: stop cleanly (a second one exits at once); SIGHUP: reload.

        The handlers only set flags: the main loop does the work, so a signal
        never re-enters a lock the main thread holds.
        """

        first: list[float] = []

        def stop(_signum: int, _frame: Any) -> None:
            if first:
                # one signal delivered twice (to the process and to its group, as
                # `timeout` and some supervisors do) is not a second request
                if time.monotonic() - first[0] > DOUBLE_DELIVERY:
                    os.write(2, b"campaign-runner: second signal, exiting at once\n")
                    os._exit(130)
                return
            first.append(time.monotonic())
            self._stopping.set()
            self._wake.set()

        def reload(_signum: int, _frame: Any) -> None:
            self._reload = True
            self._wake.set()

        handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: reload}
        old = {s: signal.signal(s, h) for s, h in handlers.items()}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _shutdown(self) -> int:
        self._stopping.set()
        with self._lock:
            active = list(self._active.values())
        self.log.emit("daemon.stopping", active_runs=[a.name for a in active])
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for a in active:
            a.stop.set()  # in-flight calls finish and are recorded; runs end resumable
        deadline = time.monotonic() + self.settings.stop_timeout
        for a in active:
            a.thread.join(max(0.0, deadline - time.monotonic()))
        left = [a.name for a in active if a.thread.is_alive()]
        if left:
            self.log.emit("daemon.stop_timeout", still_running=left)
        self.log.emit("daemon.stopped")
        return 1 if left else 0

    def health(self) -> Health:
        running = self.scheduler.state == STATE_RUNNING  # started and not paused
        jobs = self.scheduler.get_jobs() if running else []
        with self._lock:
            active = tuple(a.name for a in self._active.values())
        return Health(
            scheduler_running=running,
            stopping=self._stopping.is_set(),
            campaigns=len(jobs),
            active_runs=active,
            next_fire={
                (job.name, Path(job.id).name): job.next_run_time.timestamp()
                for job in jobs
                if job.next_run_time is not None
            },
        )

    # -- the folders ------------------------------------------------------------------

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
            self._unschedule(str(path), "file deleted")
        for path in (*changes.added, *changes.changed):
            self._consider(path)
        if full:  # jobs left from files that are gone, or from other folders
            for job in self.scheduler.get_jobs():
                if job.id not in self._wanted:
                    self._names.setdefault(job.id, job.name)
                    self._unschedule(job.id, "not in the watched folders")

    def _consider(self, path: Path) -> None:
        from runner.loader import load

        result = load(path, env=os.environ)
        for p in result.problems:
            if self.settings.sandbox and p.message.startswith("environment variable"):
                continue  # the sandbox gives unset credentials stand-in values
            self.err.write(p.format() + "\n")
        self.err.flush()
        campaign = result.campaign
        if campaign is None:
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

    def _schedule(self, path: Path, campaign: Campaign, schedule: Schedule) -> None:
        job_id = str(path)
        trigger = campaign_trigger(schedule, campaign.timezone)
        grace = grace_seconds(schedule, self.settings.misfire_grace)
        self._names[job_id] = campaign.name
        existing = self.scheduler.get_job(job_id)
        if existing is not None and (
            repr(existing.trigger),
            existing.misfire_grace_time,
            existing.coalesce,
            existing.name,
        ) == (repr(trigger), grace, schedule.coalesce, campaign.name):
            self._wanted.add(job_id)  # same schedule: keep its next (or missed) time
            return
        if schedule.at is not None and self._ran_since(path, schedule.at):
            self._unschedule(job_id, "its one run (at:) has started already")
            return
        job = self.scheduler.add_job(
            FIRE_REF,
            trigger,
            args=[job_id],
            id=job_id,
            name=campaign.name,
            misfire_grace_time=grace,
            coalesce=schedule.coalesce,
            replace_existing=True,
        )
        self._wanted.add(job_id)
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
        self._wanted.discard(job_id)
        if self.scheduler.get_job(job_id) is None:
            return
        self.scheduler.remove_job(job_id)
        self.log.emit(
            "campaign.unscheduled",
            campaign=self._names.get(job_id),
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

    def _on_missed(self, event: JobExecutionEvent) -> None:
        late = (datetime.now(UTC) - event.scheduled_run_time).total_seconds()
        self.log.emit(
            "schedule.misfired",
            campaign=self._names.get(event.job_id),
            path=event.job_id,
            scheduled=event.scheduled_run_time.isoformat(),
            late_by=round(late, 1),
            action="skipped: later than misfire_grace_time",
        )

    def _on_executed(self, event: JobExecutionEvent) -> None:
        late = (datetime.now(UTC) - event.scheduled_run_time).total_seconds()
        if late > LATE_AFTER:
            self.log.emit(
                "schedule.late",
                campaign=self._names.get(event.job_id),
                path=event.job_id,
                scheduled=event.scheduled_run_time.isoformat(),
                late_by=round(late, 1),
                action="started late: within misfire_grace_time",
            )

    # -- runs ----------------------------------------------------------------------------

    def fire(self, path: Path, resume: str | None = None) -> bool:
        """Start a run of ``path`` in its own thread, unless one is already going."""
        name = self._names.get(str(path), path.stem)
        with self._lock:
            if self._stopping.is_set():
                return False
            busy = path in self._active
            if not busy:
                stop = threading.Event()
                thread = threading.Thread(
                    target=self._run,
                    args=(path, resume, stop),
                    name=f"run:{path.name}",
                    daemon=True,
                )
                self._active[path] = _Active(name, stop, thread)
                thread.start()
        if busy:
            self.log.emit("run.skipped_overlap", campaign=name, path=str(path))
            return False
        return True

    def _run(self, path: Path, resume: str | None, stop: threading.Event) -> None:
        try:
            self._run_once(path, resume, stop)
        except CampaignError as e:
            for p in e.problems:
                self.err.write(p.format() + "\n")
            self.err.flush()
            problems = [p.format() for p in e.problems if p.severity == "error"]
            self.log.emit("run.not_started", path=str(path), problems=problems)
        except RunnerError as e:
            self.log.emit("run.error", path=str(path), error=str(e))
        except Exception as e:  # a bug must not take the daemon down; no traceback
            crash = write_crash_log()
            self.log.emit(
                "run.crashed", path=str(path), error=type(e).__name__, details=crash
            )
        finally:
            with self._lock:
                self._active.pop(path, None)
            self.log.flush()

    def _run_once(self, path: Path, resume: str | None, stop: threading.Event) -> None:
        from runner.loader import load_campaign

        sandbox = self.settings.sandbox
        campaign, _ = load_campaign(path, env=os.environ, require_env=not sandbox)
        with self._lock:
            if path in self._active:
                self._active[path].name = campaign.name
        resolved, redactor = resolve_options(campaign, os.environ, sandbox=sandbox)
        self.redactors.include(redactor)
        options = self._options(resume)
        emulators = None
        urls = None
        try:
            if sandbox:
                from runner.sandbox.launch import start_for

                emulators, urls = start_for(
                    campaign, resolved, settle=self.settings.settle
                )
            providers = build_providers(campaign, resolved, urls)
            try:
                if not stop.is_set():
                    run_campaign(
                        campaign,
                        journal=self.journal,
                        log=self.log,
                        providers=providers,
                        options=options,
                        stop=stop,
                    )
            finally:
                for p in providers.values():
                    p.close()
        finally:
            if emulators is not None:
                emulators.stop()

    def _options(self, resume: str | None) -> RunOptions:
        """A new run's options, or the stored options of the run being resumed."""
        base = RunOptions()
        if resume is not None:
            stored = self.journal.get_run(resume) or {}
            try:
                saved = json.loads(stored.get("options") or "{}")
            except ValueError:
                saved = {}
            names = {f.name for f in dataclasses.fields(RunOptions)}
            base = RunOptions(**{k: v for k, v in saved.items() if k in names})
            base = dataclasses.replace(base, resume=resume)
        if self.settings.sandbox and base.max_poll_interval is None:
            # the emulators settle in about a second: poll reports briskly
            base = dataclasses.replace(base, max_poll_interval=self.settings.settle)
        return base

    def _resume_unfinished(self) -> None:
        """Runs a crash or a stop left unfinished, of files still in the folders."""
        files = {str(p) for p in campaign_files(self.settings.folders)}
        with self.journal.connect() as conn:
            rows = list(
                conn.execute(
                    sa.select(runs.c.id, runs.c.campaign_path)
                    .where(runs.c.status.in_(["running", "interrupted"]))
                    .order_by(runs.c.started_at)
                )
            )
        latest = {path: run_id for run_id, path in rows if path in files}
        for path, run_id in sorted(latest.items()):
            self.log.emit("run.resuming", run_id, path=path)
            self.fire(Path(path), resume=run_id)


def serve(settings: DaemonSettings, *, out: TextIO, err: TextIO) -> int:
    """Take the journal's lock, then run the daemon until it is told to stop."""
    for folder in settings.folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such directory")
    settings = dataclasses.replace(
        settings, folders=tuple(f.resolve() for f in settings.folders)
    )
    journal_path = settings.state or default_path()
    lock = StateLock(lock_path(journal_path))
    lock.acquire()
    try:
        journal, log_path = open_state(Settings(state=journal_path, log=settings.log))
        json_logs = settings.log_format == "json"
        redactors = _Redactors()
        echo = _Echo(out if json_logs else err, human=not json_logs)
        log = EventLog(log_path, redact=redactors, echo=cast(TextIO, echo))
        _ = journal.writer  # one writer thread, created before runs share it
        quiet_scheduler_logs()
        daemon = Daemon(settings, journal, log, redactors, err)
        server = None
        try:
            if settings.http:
                server = MetricsServer(settings.http, journal, daemon.health).start()
                log.emit("http.listening", url=server.url)
            with daemon.signals():
                return daemon.run()
        finally:
            if server is not None:
                server.stop()
            log.close()
            journal.close()
    finally:
        lock.release()
