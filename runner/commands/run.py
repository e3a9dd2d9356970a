"""``campaign-runner run``: load, resolve secrets, wire providers, run, summarise."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from runner.commands.args import add_state
from runner.commands.guard import confirmed, question
from runner.commands.session import Session, Settings, session
from runner.engine.context import EXIT_FAILED, RunOptions, RunResult
from runner.engine.occurrence import ONCE, current
from runner.engine.occurrence import again as new_occurrence
from runner.errors import UsageError
from runner.journal.runs import UNFINISHED
from runner.model.campaign import SendAction


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
        "--again",
        action="store_true",
        help="send again on purpose: a new occurrence, named by the time",
    )
    p.add_argument(
        "--occurrence",
        metavar="KEY",
        help="the sending this run is (default: once, or a cron period's fire time)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="do not ask before a real send (see CAMPAIGN_RUNNER_CONFIRM_ABOVE)",
    )
    p.add_argument(
        "--resend-unknown",
        action="store_true",
        help="resend messages whose outcome is unknown (they may be received twice)",
    )
    p.add_argument(
        "--export-pins",
        metavar="FILE",
        help="append phone,pin to FILE (mode 0600) as a PIN step's PINs come back; "
        "otherwise PINs are kept only as hashes (pin verify)",
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
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: a summary of the run for tools on stdout, the progress on stderr",
    )


def main(args: argparse.Namespace) -> int:
    """Run a campaign once, step by step at the times it says, then exit.

    Exit status: 0 every step succeeded, 1 a step failed or a check was not met,
    2 invalid campaign or usage, 4 some outcomes are unknown (the command that
    settles them is printed), 5 cancelled, 130 interrupted (resume with --resume).
    On a terminal, a real send that already ran, or to more recipients than
    $CAMPAIGN_RUNNER_CONFIRM_ABOVE (1000), asks first (--yes does not).
    With --format json the last thing on stdout is the run's summary as one JSON
    object (run id, status, exit code, each step, the journal and event log); what
    people read goes to stderr.
    """
    if args.faults and not args.sandbox:
        raise UsageError("--faults needs --sandbox")
    if args.again and args.resume:
        raise UsageError("--again starts a new run; --resume continues one: pick one")
    if args.occurrence is not None and args.again:
        raise UsageError(
            "--again names a new occurrence itself; --occurrence a given one"
        )
    if args.occurrence is not None and not args.occurrence.strip():
        raise UsageError("--occurrence: give a name, e.g. --occurrence spring-2")
    if args.occurrence is not None and args.resume:
        raise UsageError("--occurrence picks the sending; --resume a run: pick one")
    settings = Settings(
        state=args.state,
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
        export_pins=args.export_pins,
    )
    ask = None if args.yes or not sys.stdin.isatty() else sys.stdin
    as_json = args.format == "json"
    return run_file(
        Path(args.file),
        settings,
        options,
        out=sys.stderr if as_json else sys.stdout,
        again=args.again,
        ask=ask,
        occurrence=args.occurrence,
        report=sys.stdout if as_json else None,
    ).exit_code


def run_file(
    path: Path,
    settings: Settings,
    options: RunOptions,
    *,
    out: TextIO,
    err: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    again: bool = False,
    ask: TextIO | None = None,
    occurrence: str | None = None,
    report: TextIO | None = None,
) -> RunResult:
    """Run ``path``; the campaign's earlier run in the same mode is continued,
    not started again (unless ``again``): see ``_converge``. With ``report``,
    the run's summary is also written there as one JSON object."""
    if options.dry_run:
        if options.resume:
            raise UsageError("--dry-run cannot be combined with --resume")
        # nothing to wait for: no step time, no window
        options = dataclasses.replace(options, now=True, ignore_windows=True)
    with session(
        path,
        settings,
        out=out,
        err=err,
        env=env,
        show_phones=options.show_phones,
        dry_run=options.dry_run,
    ) as s:
        journal, campaign = s.journal, s.campaign
        if again:
            occurrence = occurrence or new_occurrence()
            out.write(f"a repeat on purpose: a new occurrence {occurrence}\n")
        if not (options.resume or options.dry_run):
            options = _converge(s, options, out, occurrence)
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
                raise UsageError(f"no run {options.resume!r} in {journal.where}")
            if run["campaign"] != campaign.name:
                raise UsageError(
                    f"run {options.resume!r} belongs to campaign {run['campaign']!r}"
                )
        if options.resume:
            _check_control(s, options.resume)
        if ask is not None and not (settings.sandbox or options.dry_run):
            converged = options.only_steps is not None
            if converged or not options.resume:
                text = question(campaign, again=converged)
                if text is not None and not confirmed(text, ask, out):
                    out.write("not confirmed: nothing was sent\n")
                    if report is not None:
                        json.dump(
                            {
                                "campaign": campaign.name,
                                "status": "not confirmed",
                                "exit_code": EXIT_FAILED,
                            },
                            report,
                        )
                        report.write("\n")
                    return RunResult(options.resume or "", EXIT_FAILED, {})
        if settings.sandbox and options.now and options.max_poll_interval is None:
            # a rehearsal: the emulators settle in about a second, so poll briskly
            options = dataclasses.replace(options, max_poll_interval=settings.settle)
        verb = "resuming" if options.resume else "running"
        out.write(
            f"{verb} {campaign.name} ({len(campaign.steps)} steps)"
            + (" [dry run]" if options.dry_run else "")
            + "\n"
        )
        out.flush()
        result = s.run(options, stop or threading.Event())
        s.summarise(result, dry_run=options.dry_run)
        if report is not None:
            json.dump(s.report(result, dry_run=options.dry_run), report, indent=2)
            report.write("\n")
        return result


def _converge(
    s: Session, options: RunOptions, out: TextIO, occurrence: str | None
) -> RunOptions:
    """The run of this occurrence (same mode) to continue instead of a new one.

    An unfinished run goes on where it stopped. A real occurrence that already
    ran is continued too: its send steps plan only the recipients without a
    message yet (rows added since), so running it again sends nothing twice. A
    cron campaign's occurrence is the current period's fire time, so the next
    period is a new run; a finished rehearsal costs nothing to repeat, so the
    sandbox starts anew.
    """
    name = s.campaign.name
    occurrence = occurrence or current(s.campaign)
    mode = "sandbox" if s.settings.sandbox else "real"
    new = dataclasses.replace(options, occurrence=occurrence)
    run = s.journal.run_of_occurrence(name, occurrence, mode)
    if run is None or json.loads(run.get("options") or "{}").get("dry_run"):
        return new
    run_id, status = run["id"], run["status"]
    if status in UNFINISHED:
        out.write(
            f"campaign {name} has an unfinished run {run_id} ({status}, started "
            f"{run['started_at']}): continuing it, so nobody gets a message twice "
            "(--again starts a new run)\n"
        )
        return dataclasses.replace(options, resume=run_id)
    if s.settings.sandbox:
        return new  # a finished rehearsal is rehearsed again from the start
    if status == "cancelled":
        control = s.journal.control_of(run_id)
        raise UsageError(
            f"campaign {name}: its run {run_id} was cancelled"
            + (f" by {control.by} at {control.at}" if control.by else "")
            + "; nothing more is sent for it (--again starts a new run, to everyone)"
        )
    sends = [st.id for st in s.campaign.steps if isinstance(st.action, SendAction)]
    counts = s.journal.message_counts(run_id)
    done = counts.get("sent", 0)
    what = "already ran" if occurrence == ONCE else f"already ran for {occurrence}"
    out.write(
        f"campaign {name} {what} (run {run_id}, {status}, {done} sent): sending "
        "only to recipients without a message yet (--again sends to everyone again)\n"
    )
    return dataclasses.replace(options, resume=run_id, only_steps=frozenset(sends))


def _check_control(s: Session, run_id: str) -> None:
    """A paused or cancelled run is not continued behind the back of who asked."""
    control = s.journal.control_of(run_id)
    args = s.settings.state_args()
    if control.state == "paused":
        raise UsageError(
            f"run {run_id} is paused (by {control.by} at {control.at}): resume it "
            f"first (campaign-runner resume {run_id}{args}), or start anew with --again"
        )
    if control.state == "cancelled":
        raise UsageError(
            f"run {run_id} was cancelled (by {control.by} at {control.at}): it "
            "cannot be continued; --again starts a new run"
        )
