"""``campaign-runner retry``: send again, within the same run, what did not go out."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TextIO

from runner.commands.args import add_state
from runner.commands.output import open_journal
from runner.commands.session import Settings, session
from runner.engine.context import RunOptions, RunResult
from runner.engine.resend import (
    FAILURE_KINDS,
    RETRYABLE,
    Choice,
    queue_failed,
    queue_unknown,
    send_steps,
    unknown_by_step,
)
from runner.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID", help="a run id from 'history'")
    p.add_argument(
        "--failed",
        action="store_true",
        help="messages that failed for a reason that may pass: " + ", ".join(RETRYABLE),
    )
    p.add_argument(
        "--reason",
        metavar="KIND[,KIND]",
        help="with --failed, these failure kinds instead ("
        + ", ".join(FAILURE_KINDS)
        + "), e.g. rejected after fixing numbers",
    )
    p.add_argument(
        "--unknown",
        "--include-unknown",
        dest="unknown",
        action="store_true",
        help="messages whose outcome is unknown: settled from the provider's report "
        "where it has one; what stays unknown is resent only if you confirm "
        "(it may be received twice)",
    )
    p.add_argument(
        "--provider", metavar="NAME", help="send through this provider of the campaign"
    )
    p.add_argument(
        "--yes", action="store_true", help="do not ask before resending unknown ones"
    )
    add_state(p, log=True)
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="the run is a rehearsal: send to the built-in emulators again",
    )
    p.add_argument(
        "--ignore-windows", action="store_true", help="send outside the sending windows"
    )


def main(args: argparse.Namespace) -> int:
    """Send again what a run's send steps did not deliver, within the same run.

    --failed queues failed messages whose reason may pass; --unknown settles
    unknown outcomes from the provider's report and, after you confirm, resends
    what stays unknown. Every attempt is kept in the journal. Exit status as for
    run.
    """
    if not (args.failed or args.unknown):
        raise UsageError("say what to retry: --failed, --unknown, or both")
    reasons = RETRYABLE
    if args.reason:
        if not args.failed:
            raise UsageError("--reason goes with --failed")
        reasons = tuple(r.strip() for r in args.reason.split(",") if r.strip())
        bad = [r for r in reasons if r not in FAILURE_KINDS]
        if bad:
            raise UsageError(
                f"--reason {bad[0]!r}: expected one of {', '.join(FAILURE_KINDS)}"
            )
    choice = Choice(args.failed, args.unknown, reasons, args.provider)
    settings = Settings(
        state=args.state,
        log=Path(args.log) if args.log else None,
        sandbox=args.sandbox,
    )
    return retry(
        args.run_id,
        choice,
        settings,
        ignore_windows=args.ignore_windows,
        yes=args.yes,
        out=sys.stdout,
        ask=sys.stdin if sys.stdin.isatty() else None,
    ).exit_code


def retry(
    run_id: str,
    choice: Choice,
    settings: Settings,
    *,
    ignore_windows: bool = False,
    yes: bool = False,
    out: TextIO,
    ask: TextIO | None = None,
) -> RunResult:
    journal = open_journal(str(settings.state) if settings.state else None)
    try:
        run = journal.get_run(run_id)
    finally:
        journal.close()
    if run is None:
        raise UsageError(f"no run {run_id!r} in the journal")
    path = Path(run["campaign_path"])
    if not path.is_file():
        raise UsageError(f"the campaign file of run {run_id} is gone: {path}")
    with session(path, settings, out=out, owner="retry") as s:
        if choice.provider is not None and choice.provider not in s.campaign.providers:
            names = ", ".join(s.campaign.providers)
            raise UsageError(f"--provider {choice.provider!r}: the campaign has {names}")
        steps = send_steps(s.campaign)
        touched = (
            dict(queue_failed(s.journal, run_id, steps, choice)) if choice.failed else {}
        )
        if choice.unknown:
            touched.update(unknown_by_step(s.journal, run_id, steps))
        if not touched:
            out.write(f"run {run_id}: nothing to retry\n")
            return RunResult(run_id, 0, {})
        queued = sum(
            s.journal.message_counts(run_id, st).get("queued", 0) for st in touched
        )
        out.write(f"retrying run {run_id}: {queued} messages queued again\n")
        options = RunOptions(
            resume=run_id,
            now=True,
            ignore_windows=ignore_windows,
            only_steps=frozenset(touched),
            provider=choice.provider,
        )
        stop = threading.Event()
        result = s.run(options, stop)
        left = unknown_by_step(s.journal, run_id, steps) if choice.unknown else {}
        if left and not stop.is_set():
            n = sum(left.values())
            if not yes and not _confirmed(n, ask, out):
                out.write(
                    f"{n} messages left unknown; not resent (add --yes to resend them: "
                    "they may be received twice)\n"
                )
            else:
                queue_unknown(s.journal, run_id, left, choice.provider)
                result = s.run(
                    RunOptions(
                        resume=run_id,
                        now=True,
                        ignore_windows=ignore_windows,
                        only_steps=frozenset(left),
                        provider=choice.provider,
                    ),
                    stop,
                )
        s.summarise(result)
        return result


def _confirmed(n: int, ask: TextIO | None, out: TextIO) -> bool:
    """Ask on a terminal; without one, the answer is no."""
    if ask is None:
        return False
    out.write(
        f"{n} messages may already have been received (their answers were lost). "
        "Send them again? They may get it twice. [y/N] "
    )
    out.flush()
    return ask.readline().strip().lower() in ("y", "yes")
