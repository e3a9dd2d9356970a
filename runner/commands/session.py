"""What ``run`` and ``retry`` set up around the engine, and take down after.

The campaign loaded with its secrets resolved, the journal and the campaign's
lease (one process sends a campaign at a time), the event log with the terminal
view listening, the sandbox's emulators for a rehearsal, and the provider
objects.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from runner.commands.console import Console
from runner.commands.sandbox import start_emulators
from runner.engine.context import EXIT_CANCELLED, EXIT_UNSETTLED, RunOptions, RunResult
from runner.engine.run import run_campaign
from runner.errors import UsageError
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.leases import Lease
from runner.journal.where import locate
from runner.loader.load import load_campaign
from runner.model.campaign import Campaign
from runner.providers.base import Provider
from runner.providers.setup import build_providers, resolve_options

OUTCOMES = {
    0: "succeeded",
    1: "failed",
    EXIT_UNSETTLED: "unsettled: some outcomes are unknown (see the step above)",
    EXIT_CANCELLED: "cancelled",
    130: "interrupted (resume with --resume)",
}


# the run's outcome as one word, for tools (``run --format json``)
STATUS_WORDS = {
    0: "succeeded",
    1: "failed",
    EXIT_UNSETTLED: "unsettled",
    EXIT_CANCELLED: "cancelled",
    130: "interrupted",
}


@dataclass(frozen=True)
class Settings:
    """Where state goes and how the run behaves (from the command line)."""

    # journal path or postgresql:// URL; None: $CAMPAIGN_RUNNER_STATE or XDG state
    state: Path | str | None = None
    log: Path | None = None  # event log; None: events.jsonl beside the journal
    sandbox: bool = False
    faults: str | None = None  # --faults for the sandbox
    settle: float = 1.0  # sandbox: seconds before a delivery status is final

    def state_args(self) -> str:
        """What a command printed for people adds to reach this journal."""
        return f" --state {shlex.quote(str(self.state))}" if self.state else ""

    def command_args(self) -> str:
        """What a command printed for people adds to reach this journal and mode."""
        return self.state_args() + (" --sandbox" if self.sandbox else "")


@dataclass
class Session:
    campaign: Campaign
    settings: Settings
    journal: Journal
    log: EventLog
    log_path: Path
    providers: dict[str, Provider] = field(default_factory=dict)
    sandbox_root: str | None = None
    out: TextIO = sys.stdout
    lease: Lease | None = None  # this process's hold on the campaign

    def run(self, options: RunOptions, stop: threading.Event) -> RunResult:
        """The campaign through the engine, stopped cleanly by Ctrl-C/SIGTERM."""
        options = dataclasses.replace(options, command_args=self.settings.command_args())
        with stop_on_signals(stop):
            return run_campaign(
                self.campaign,
                journal=self.journal,
                log=self.log,
                providers=self.providers,
                options=options,
                stop=stop,
                sandbox=self.sandbox_root,
                lease=self.lease,
            )

    def summarise(self, result: RunResult, *, dry_run: bool = False) -> None:
        out = self.out
        outcome = OUTCOMES.get(result.exit_code, str(result.exit_code))
        out.write(f"run {result.run_id}: {outcome}\n")
        counts = self.journal.message_counts(result.run_id)
        if counts:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            out.write(f"messages: {parts}\n")
        if dry_run:
            out.write("dry run: nothing was sent and nothing was recorded\n")
        else:
            out.write(f"journal: {self.journal.where}  events: {self.log_path}\n")

    def report(self, result: RunResult, *, dry_run: bool = False) -> dict[str, Any]:
        """What ``summarise`` says, for tools: the run, each step's status and
        message counts, and where the journal and the event log are (none for a
        dry run, whose scratch journal is deleted)."""
        journal = self.journal
        steps = journal.step_status(result.run_id) if result.run_id else {}
        rows = []
        for sid, st in steps.items():
            row: dict[str, Any] = {
                "id": sid,
                "kind": st["kind"],
                "status": st["status"],
                "message": st["detail"].get("message", ""),
                "started_at": st["started_at"],
                "finished_at": st["finished_at"],
            }
            if st["kind"] == "send":
                row["messages"] = journal.message_counts(result.run_id, sid)
                if "recipients" in st["detail"]:
                    row["recipients"] = st["detail"]["recipients"]
            rows.append(row)
        return {
            "run_id": result.run_id or None,
            "campaign": self.campaign.name,
            "status": STATUS_WORDS.get(result.exit_code, str(result.exit_code)),
            "exit_code": result.exit_code,
            "mode": "dry run"
            if dry_run
            else ("rehearsal" if self.settings.sandbox else "real"),
            "steps": rows,
            "messages": journal.message_counts(result.run_id) if result.run_id else {},
            "journal": None if dry_run else str(journal.where),
            "events": None if dry_run else str(self.log_path),
        }


@contextmanager
def session(
    path: Path,
    settings: Settings,
    *,
    out: TextIO,
    err: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    show_phones: bool = False,
    dry_run: bool = False,
    owner: str | None = "run",
) -> Iterator[Session]:
    """Everything a command that sends needs; ``owner`` takes the campaign's lease
    (``run``, ``retry``); ``None`` takes none (a test send never blocks a run)."""
    env = os.environ if env is None else env
    stand_ins = settings.sandbox or dry_run  # unset credentials get stand-ins
    campaign, warnings = load_campaign(path, env=env, require_env=not stand_ins)
    for w in warnings:
        if stand_ins and w.message.startswith("environment variable"):
            continue
        out.write(w.format() + "\n")
    resolved, redactor = resolve_options(campaign, env, sandbox=stand_ins)
    scratch = None
    if dry_run:
        # a rehearsal leaves no trace: its journal and log live in a scratch folder
        scratch = tempfile.mkdtemp(prefix="campaign-runner-dry-run-")
        settings = dataclasses.replace(
            settings,
            state=Path(scratch) / "journal.db",
            log=Path(scratch) / "events.jsonl",
        )
    where = locate(settings.state, env)
    journal = log = emulators = lease = None
    built: dict[str, Provider] = {}
    try:
        journal = Journal(where)
        # One process per campaign, taken before anything is decided: a daemon or
        # another terminal continuing this campaign while we send it would send
        # twice. Other campaigns run beside it on the same journal.
        holder = None if owner is None else journal.take_lease(campaign.name, owner)
        if holder is not None:
            raise UsageError(
                f"campaign {campaign.name!r} is being sent by {holder.describe()}: "
                f"wait for it to end, or pause or cancel it (campaign-runner pause "
                f"{shlex.quote(campaign.name)}{settings.state_args()})"
            )
        if owner is not None:
            lease = Lease(journal, campaign.name)
        log_path = settings.log or where.beside("events.jsonl")
        log = EventLog(log_path, redact=redactor, show_phones=show_phones)
        Console(out, err or sys.stderr, campaign.timezone).attach(log)
        urls = None
        if settings.sandbox:
            emulators, urls = start_emulators(
                campaign, resolved, settle=settings.settle, faults=settings.faults
            )
            out.write(f"sandbox: emulators on {emulators.root}\n")
        built = build_providers(campaign, resolved, urls)
        yield Session(
            campaign,
            settings,
            journal,
            log,
            log_path,
            built,
            emulators.root if emulators is not None else None,
            out,
            lease,
        )
    finally:
        for p in built.values():
            p.close()
        if emulators is not None:
            emulators.stop()
        if log is not None:
            log.close()
        if lease is not None:
            lease.release()
        if journal is not None:
            journal.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C / SIGTERM: stop cleanly (in-flight calls finish, all recorded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
