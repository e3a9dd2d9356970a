"""Every daemon on a shared journal sends: it helps the send steps others drive.

The leader schedules and drives runs; every daemon (leader or standing by) looks
every ``POLL`` seconds for send steps driven by another process with messages
still queued, finds the campaign of that name in its own folders (the same
folder, or its own copy), and helps send it (``engine.helper``). A daemon never
helps a rehearsal (its emulators live in the driving process) nor a run someone
paused or is cancelling.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from runner.daemon.logs import SharedRedactor
from runner.daemon.watch import campaign_files
from runner.engine.helper import help_send
from runner.errors import RunnerError, write_crash_log
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.workers import Joinable
from runner.loader.load import load_campaign
from runner.model.campaign import Campaign
from runner.providers.setup import build_providers, resolve_options

POLL = 1.0  # seconds between looks for steps to help
MAX_HELPS = 4  # steps one daemon helps at once


class Helpers:
    """The thread that finds steps to help, and one thread per step helped."""

    def __init__(
        self,
        journal: Journal,
        log: EventLog,
        folders: tuple[Path, ...],
        redactors: SharedRedactor,
    ) -> None:
        self.journal = journal
        self.log = log
        self.folders = folders
        self.redactors = redactors
        self._stop = threading.Event()
        self._active: dict[tuple[str, str], threading.Thread] = {}
        self._names: dict[Path, tuple[int, str | None]] = {}  # path: (mtime, name)
        self._missing: set[str] = set()  # names not found, said once
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="helpers", daemon=True)

    def start(self) -> Helpers:
        self._thread.start()
        return self

    def active(self) -> int:
        with self._lock:
            return len(self._active)

    def _loop(self) -> None:
        while not self._stop.wait(POLL):
            try:
                self._look()
            except Exception as e:  # the journal away, a bug: try again next poll
                self.log.emit(
                    "daemon.error", error=type(e).__name__, details=write_crash_log()
                )

    def _look(self) -> None:
        worker = self.journal.worker.id
        for job in self.journal.joinable(worker):
            key = (job.run_id, job.step_id)
            with self._lock:
                if key in self._active or len(self._active) >= MAX_HELPS:
                    continue
            campaign = self._campaign(job.campaign)
            if campaign is None:
                continue
            thread = threading.Thread(
                target=self._help,
                args=(campaign, job),
                name=f"help:{job.campaign}",
                daemon=True,
            )
            with self._lock:
                self._active[key] = thread
            thread.start()

    def _help(self, campaign: Campaign, job: Joinable) -> None:
        try:
            resolved, redactor = resolve_options(campaign, os.environ, sandbox=False)
            self.redactors.include(redactor)
            providers = build_providers(campaign, resolved)
            try:
                provider = providers.get(job.provider)
                if provider is not None:
                    help_send(self.journal, self.log, campaign, job, provider, self._stop)
            finally:
                for p in providers.values():
                    p.close()
        except RunnerError as e:
            self.log.emit("step.help_failed", job.run_id, job.step_id, error=str(e))
        except Exception as e:  # a bug must not take the daemon down
            self.log.emit(
                "step.help_failed",
                job.run_id,
                job.step_id,
                error=type(e).__name__,
                details=write_crash_log(),
            )
        finally:
            with self._lock:
                self._active.pop((job.run_id, job.step_id), None)

    def _campaign(self, name: str) -> Campaign | None:
        """The campaign called ``name`` in this daemon's folders, loaded anew."""
        for path in campaign_files(self.folders):
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            known = self._names.get(path)
            if known is not None and known[0] == mtime and known[1] != name:
                continue
            try:
                campaign, _ = load_campaign(path, env=os.environ, require_env=True)
            except RunnerError:
                self._names[path] = (mtime, None)
                continue
            self._names[path] = (mtime, campaign.name)
            if campaign.name == name:
                return campaign
        if name not in self._missing:
            self._missing.add(name)
            self.log.emit(
                "step.help_skipped",
                campaign=name,
                reason="no campaign of that name in this daemon's folders",
            )
        return None

    def stop(self) -> None:
        """No new help; the steps being helped stop, their calls recorded."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            threads = list(self._active.values())
        for t in threads:
            t.join(timeout=30)
