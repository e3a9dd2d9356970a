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
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, TextIO

from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING

from runner.daemon.health import Health
from runner.daemon.helpers import Helpers
from runner.daemon.leader import Leadership, stand_by
from runner.daemon.logs import SharedRedactor
from runner.daemon.resume import run_options, unfinished_runs
from runner.daemon.schedules import CampaignSchedules
from runner.daemon.settings import DaemonSettings, Emulate
from runner.engine.occurrence import current
from runner.engine.run import run_campaign
from runner.errors import CampaignError, RunnerError, write_crash_log
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.leases import Lease
from runner.journal.runs import UNFINISHED
from runner.journal.schedule import JOBS_TABLE
from runner.loader.load import load_campaign
from runner.model.campaign import Campaign
from runner.providers.setup import build_providers, resolve_options

# stored in every job (the job store pickles a textual reference): it must keep
# naming the same function across releases, so it names the package, which
# re-exports it
FIRE_REF = "runner.daemon:fire_campaign"
DOUBLE_DELIVERY = 0.5  # seconds within which a repeated stop signal is the same one


_current: Daemon | None = None


def fire_campaign(path: str) -> None:
    """The scheduled job: start a run of the campaign file ``path`` (never blocks)."""
    daemon = _current
    if daemon is not None:
        daemon.fire(Path(path))


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
        redactors: SharedRedactor,
        err: TextIO,
        emulate: Emulate | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.settings = settings
        # several daemons on one PostgreSQL journal: only the leader schedules
        self.leadership = leadership
        self.role = "leader" if leadership is None else "standby"
        self.journal = journal
        self.log = log
        self.redactors = redactors
        self.err = err
        self.emulate = emulate  # starts a rehearsal's emulators (daemon --sandbox)
        self.scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=journal.engine, tablename=JOBS_TABLE)
            },
            # the job only hands the run to its own thread: two workers are plenty
            executors={"default": ThreadPoolExecutor(2)},
            job_defaults={"max_instances": 1},
            timezone=UTC,
        )
        self.schedules = CampaignSchedules(
            self.scheduler,
            journal,
            log,
            err,
            folders=settings.folders,
            fire_ref=FIRE_REF,
            misfire_grace=settings.misfire_grace,
            sandbox=settings.sandbox,
        )
        self.scheduler.add_listener(self.schedules.on_missed, EVENT_JOB_MISSED)
        self.scheduler.add_listener(self.schedules.on_executed, EVENT_JOB_EXECUTED)
        self._active: dict[Path, _Active] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._reload = False
        # on a shared journal every daemon, standing by or leading, helps send
        self.helpers = (
            Helpers(journal, log, settings.folders, redactors)
            if journal.shared and not settings.sandbox
            else None
        )

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        """Scan, resume, then rescan every ``poll`` seconds until SIGTERM/SIGINT."""
        global _current
        _current = self
        if self.helpers is not None:
            self.helpers.start()
        if self.leadership is not None:  # one PostgreSQL, several daemons
            lead = (self.leadership, self._stopping, self._wake, self._beat, self.log)
            if not stand_by(*lead):
                _current = None
                if self.helpers is not None:
                    self.helpers.stop()
                self.journal.forget_daemon()
                return 0  # stopped while standing by
            self.role = "leader"
        # paused until the folders are reconciled: a job stored for a file that
        # has gone must not fire first
        self.scheduler.start(paused=True)
        try:
            self.schedules.rescan(full=True)
            self._resume_unfinished()
            self.scheduler.resume()
            self._beat()
            self.log.emit(
                "daemon.started",
                pid=os.getpid(),
                folders=[str(f) for f in self.settings.folders],
                journal=self.journal.where,
                sandbox=self.settings.sandbox,
                campaigns=len(self.schedules.wanted),
            )
            while not self._stopping.is_set():
                self._wake.wait(self.settings.poll)
                self._wake.clear()
                if self._stopping.is_set():
                    break
                self._beat()
                full, self._reload = self._reload, False
                if full:
                    self.log.emit("daemon.reload")
                if self.leadership is not None and not self.leadership.alive():
                    # another daemon may lead now: never schedule beside it
                    self.log.emit("daemon.leadership_lost")
                    self._stopping.set()
                    self._shutdown()
                    return 1
                try:
                    self.schedules.rescan(full=full)
                    if self.leadership is not None:  # a daemon or a run died
                        self._resume_unfinished(orphans=True)
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
            self.request_stop()

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
        """What SIGTERM does: no new work; the main loop winds the runs down."""
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
        if self.helpers is not None:
            self.helpers.stop()
        deadline = time.monotonic() + self.settings.stop_timeout
        for a in active:
            a.thread.join(max(0.0, deadline - time.monotonic()))
        left = [a.name for a in active if a.thread.is_alive()]
        if left:
            self.log.emit("daemon.stop_timeout", still_running=left)
        self.journal.forget_daemon()
        self.log.emit("daemon.stopped")
        return 1 if left else 0

    def _beat(self) -> None:
        """This daemon's row in the journal, for ``status`` on any machine."""
        with self._lock:
            active = len(self._active)
        if self.helpers is not None:
            active += self.helpers.active()
        if not self.journal.heartbeat(self.role, active):
            self.log.emit("daemon.heartbeat_failed")

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
            role=self.role,
        )

    # -- runs ----------------------------------------------------------------------------

    def fire(self, path: Path, resume: str | None = None) -> bool:
        """Start a run of ``path`` in its own thread, unless one is already going."""
        name = self.schedules.names.get(str(path), path.stem)
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
        sandbox = self.settings.sandbox
        campaign, _ = load_campaign(path, env=os.environ, require_env=not sandbox)
        with self._lock:
            if path in self._active:
                self._active[path].name = campaign.name
        resolved, redactor = resolve_options(campaign, os.environ, sandbox=sandbox)
        self.redactors.include(redactor)
        holder = self.journal.take_lease(campaign.name, "daemon")
        if holder is not None:  # a `run` in a terminal is sending it: never twice
            self.log.emit(
                "run.skipped_busy",
                campaign=campaign.name,
                path=str(path),
                holder=holder.describe(),
            )
            return
        lease = Lease(self.journal, campaign.name)
        try:
            self._run_leased(path, campaign, resolved, resume, stop, lease)
        finally:
            lease.release()

    def _run_leased(
        self,
        path: Path,
        campaign: Campaign,
        resolved: Mapping[str, Mapping[str, Any]],
        resume: str | None,
        stop: threading.Event,
        lease: Lease,
    ) -> None:
        sandbox = self.settings.sandbox
        if resume is None:  # this period's sending may have a run already
            occurrence = current(campaign)
            mode = "sandbox" if sandbox else "real"
            earlier = self.journal.run_of_occurrence(campaign.name, occurrence, mode)
            if earlier is not None and earlier["status"] in UNFINISHED:
                resume = str(earlier["id"])
            elif earlier is not None:
                self.log.emit(
                    "run.skipped_done",
                    earlier["id"],
                    campaign=campaign.name,
                    occurrence=occurrence,
                    status=earlier["status"],
                )
                return
        options = run_options(self.journal, self.settings, resume)
        if resume is None:  # the occurrence just looked up, not computed again
            options = dataclasses.replace(options, occurrence=occurrence)
        emulators = None
        urls = None
        try:
            if sandbox:
                if self.emulate is None:
                    raise RunnerError("--sandbox: no emulators were given to the daemon")
                emulators, urls = self.emulate(
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
                        sandbox=emulators.root if emulators is not None else None,
                        lease=lease,
                    )
            finally:
                for p in providers.values():
                    p.close()
        finally:
            if emulators is not None:
                emulators.stop()

    def _resume_unfinished(self, *, orphans: bool = False) -> None:
        """Runs a crash or a stop left unfinished, of files still in the folders;
        ``orphans``: only those whose process died since (their lease is free)."""
        for path, run_id in unfinished_runs(
            self.journal, self.settings.folders, orphans=orphans
        ):
            if orphans and Path(path) in self._active:
                continue
            self.log.emit("run.resuming", run_id, path=path)
            self.fire(Path(path), resume=run_id)
