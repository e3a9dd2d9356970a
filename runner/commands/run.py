"""``campaign-runner run``: load, resolve secrets, wire providers, run, summarise."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from runner.commands.args import add_state
from runner.commands.console import Console
from runner.commands.sandbox import start_emulators
from runner.engine.context import RunOptions, RunResult
from runner.engine.run import run_campaign
from runner.errors import UsageError
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.lock import StateLock, lock_path
from runner.journal.store import default_path, event_log_path
from runner.loader.load import load_campaign
from runner.providers.setup import build_providers, resolve_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the campaign file")
    add_state(p, log=True)
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="send to the built-in provider emulators on 127.0.0.1",
    )
    p.add_argument(
        "--now",
        action="store_true",
        help="start every step at once, ignoring at/after/wait",
    )
    p.add_argument(
        "--ignore-windows",
        action="store_true",
        help="send outside the steps' sending windows",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="render and count everything; no network call",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="last",
        metavar="RUN_ID",
        help="continue an unfinished run (default: the last one of this campaign)",
    )
    p.add_argument(
        "--resend-unknown",
        action="store_true",
        help="resend messages whose outcome is unknown (they may be received twice)",
    )
    p.add_argument(
        "--show-phones",
        action="store_true",
        help="log full phone numbers instead of masked ones",
    )
    p.add_argument(
        "--faults",
        metavar="SPEC",
        help="sandbox fault injection, e.g. http_503=0.1,timeout=0.02",
    )


def main(args: argparse.Namespace) -> int:
    """Run a campaign once, step by step at the times it says, then exit.

    Exit status: 0 every step succeeded, 1 a step failed or a check was not met,
    2 invalid campaign or usage, 130 interrupted (resume with --resume).
    """
    if args.faults and not args.sandbox:
        raise UsageError("--faults needs --sandbox")
    settings = Settings(
        state=Path(args.state) if args.state else None,
        log=Path(args.log) if args.log else None,
        sandbox=args.sandbox,
        faults=args.faults,
    )
    options = RunOptions(
        now=args.now,
        ignore_windows=args.ignore_windows,
        dry_run=args.dry_run,
        resume=args.resume,
        resend_unknown=args.resend_unknown,
        show_phones=args.show_phones,
    )
    return run_file(Path(args.file), settings, options, out=sys.stdout).exit_code


@dataclass(frozen=True)
class Settings:
    """Where state goes and how the run behaves (from the command line)."""

    state: Path | None = None  # journal path; None: $CAMPAIGN_RUNNER_STATE or XDG state
    log: Path | None = None  # event log; None: events.jsonl beside the journal
    sandbox: bool = False
    faults: str | None = None  # --faults for the sandbox
    settle: float = 1.0  # sandbox: seconds before a delivery status is final


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


def run_file(
    path: Path,
    settings: Settings,
    options: RunOptions,
    *,
    out: TextIO,
    err: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    env = os.environ if env is None else env
    campaign, warnings = load_campaign(
        path, env=env, require_env=not (settings.sandbox or options.dry_run)
    )
    stand_ins = settings.sandbox or options.dry_run
    for w in warnings:
        if stand_ins and w.message.startswith("environment variable"):
            continue  # the sandbox gives unset credentials stand-in values
        out.write(w.format() + "\n")
    resolved, redactor = resolve_options(
        campaign, env, sandbox=settings.sandbox or options.dry_run
    )
    if options.dry_run:
        if options.resume:
            raise UsageError("--dry-run cannot be combined with --resume")
        # a rehearsal leaves no trace: its journal and log live in a scratch folder
        scratch = tempfile.mkdtemp(prefix="campaign-runner-dry-run-")
        settings = dataclasses.replace(
            settings,
            state=Path(scratch) / "journal.db",
            log=Path(scratch) / "events.jsonl",
        )
        options = dataclasses.replace(options, now=True)  # nothing to wait for
    # One process per journal: a daemon resuming this run while we send it would
    # send twice.
    lock = StateLock(lock_path(settings.state or default_path()))
    lock.acquire()
    journal_path = settings.state or default_path()
    journal = Journal(journal_path)
    log_path = settings.log or event_log_path(journal_path)
    log = EventLog(log_path, redact=redactor, show_phones=options.show_phones)
    Console(out, err or sys.stderr, campaign.timezone).attach(log)
    sandbox = None
    try:
        if options.resume == "last":
            last = journal.last_unfinished_run(campaign.name)
            if last is None:
                raise UsageError(
                    f"no unfinished run of campaign {campaign.name!r} to resume"
                )
            options = dataclasses.replace(options, resume=last)
        elif options.resume:
            run = journal.get_run(options.resume)
            if run is None:
                raise UsageError(f"no run {options.resume!r} in {journal.path}")
            if run["campaign"] != campaign.name:
                raise UsageError(
                    f"run {options.resume!r} belongs to campaign {run['campaign']!r}"
                )
        urls = None
        if settings.sandbox and options.now and options.max_poll_interval is None:
            # a rehearsal: the emulators settle in about a second, so poll briskly
            options = dataclasses.replace(options, max_poll_interval=settings.settle)
        if settings.sandbox:
            sandbox, urls = start_emulators(
                campaign, resolved, settle=settings.settle, faults=settings.faults
            )
            out.write(f"sandbox: emulators on {sandbox.root}\n")
        providers = build_providers(campaign, resolved, urls)
        stop = stop or threading.Event()
        verb = "resuming" if options.resume else "running"
        out.write(
            f"{verb} {campaign.name} ({len(campaign.steps)} steps)"
            + (" [dry run]" if options.dry_run else "")
            + "\n"
        )
        out.flush()
        with stop_on_signals(stop):
            result = run_campaign(
                campaign,
                journal=journal,
                log=log,
                providers=providers,
                options=options,
                stop=stop,
            )
        out.write(
            f"run {result.run_id}: "
            + {
                0: "succeeded",
                1: "failed",
                130: "interrupted (resume with --resume)",
            }.get(result.exit_code, str(result.exit_code))
            + "\n"
        )
        counts = journal.message_counts(result.run_id)
        if counts:
            out.write(
                "messages: "
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                + "\n"
            )
        if options.dry_run:
            out.write("dry run: nothing was sent and nothing was recorded\n")
        else:
            out.write(f"journal: {journal.path}  events: {log_path}\n")
        for p in providers.values():
            p.close()
        return result
    finally:
        if sandbox is not None:
            sandbox.stop()
        log.close()
        journal.close()
        lock.release()
        if options.dry_run and settings.state is not None:
            shutil.rmtree(settings.state.parent, ignore_errors=True)
