"""``campaign-runner run``: load, resolve secrets, wire providers, run, summarise."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from runner import providers as registry
from runner.commands.status import StateLock, lock_path
from runner.engine.run import RunOptions, RunResult, run_campaign
from runner.errors import CampaignError, Problem, UsageError
from runner.journal.eventlog import EventLog
from runner.journal.store import Journal, default_path
from runner.model.campaign import Campaign
from runner.model.secrets import Redactor, has_reference, references, resolve
from runner.providers.base import Provider


@dataclass(frozen=True)
class Settings:
    """Where state goes and how the run behaves (from the command line)."""

    state: Path | None = None  # journal path; None: $CAMPAIGN_RUNNER_STATE or XDG state
    log: Path | None = None  # event log; None: events.jsonl beside the journal
    sandbox: bool = False
    faults: str | None = None  # --faults for the sandbox
    settle: float = 1.0  # sandbox: seconds before a delivery status is final


def resolve_options(
    campaign: Campaign, env: Mapping[str, str], *, sandbox: bool
) -> tuple[dict[str, dict[str, Any]], Redactor]:
    """Provider options with ``${VAR}`` resolved; every resolved value is redacted.

    With the sandbox, a variable that is not set gets a stand-in value, so a
    rehearsal needs no account (the emulator accepts exactly that value).
    """
    redactor = Redactor()
    resolved: dict[str, dict[str, Any]] = {}
    missing: list[Problem] = []
    for name, cfg in campaign.providers.items():
        out: dict[str, Any] = {}
        for key, value in cfg.options.items():
            if isinstance(value, str) and has_reference(value):
                scope = dict(env)
                for var in references(value):
                    if var not in scope:
                        if not sandbox:
                            missing.append(
                                Problem(
                                    str(campaign.path),
                                    cfg.line,
                                    1,
                                    f"providers.{name}.{key}",
                                    f"environment variable {var} is not set",
                                )
                            )
                        scope[var] = f"sandbox-{var.lower().replace('_', '-')}"
                try:
                    secret = resolve(value, scope)
                except KeyError:
                    continue
                redactor.add(secret)
                out[key] = secret
            else:
                out[key] = value
                if key in registry.get(cfg.type).secret_options and isinstance(
                    value, str
                ):
                    redactor.add(value)
        resolved[name] = out
    if missing:
        raise CampaignError(missing)
    return resolved, redactor


def build_providers(
    campaign: Campaign,
    options: Mapping[str, Mapping[str, Any]],
    urls: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Provider]:
    built: dict[str, Provider] = {}
    for name, cfg in campaign.providers.items():
        opts = dict(options[name])
        override = dict((urls or {}).get(name, {}))
        base_url = override.pop("base_url", None)
        opts.update(override)
        if base_url is not None:
            cfg = dataclasses.replace(cfg, base_url=base_url)
        if not opts.get("campaign_code"):
            opts["campaign_code"] = campaign.name
        built[name] = registry.get(cfg.type)(cfg, opts)
    return built


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


def open_state(settings: Settings) -> tuple[Journal, Path]:
    path = settings.state or default_path()
    journal = Journal(path)
    log_path = settings.log or path.with_name("events.jsonl")
    return journal, log_path


def run_file(
    path: Path,
    settings: Settings,
    options: RunOptions,
    *,
    out: TextIO,
    env: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    from runner.loader.load import load_campaign

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
    journal, log_path = open_state(settings)
    log = EventLog(log_path, redact=redactor, show_phones=options.show_phones)
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
            from runner.sandbox.faults import FaultPlan
            from runner.sandbox.launch import start_for

            plan = (
                FaultPlan.parse(settings.faults, campaign.sandbox.seed)
                if settings.faults
                else None
            )
            sandbox, urls = start_for(
                campaign, resolved, settle=settings.settle, faults=plan
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
                out=out,
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
