"""``campaign-runner test``: one recipient's real message, sent to your own phone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from runner.audience.phones import InvalidPhone, PhoneNormalizer
from runner.commands.args import add_state
from runner.commands.session import Settings, session
from runner.engine.testsend import TestResult, pick, send_step, send_test
from runner.errors import UsageError
from runner.model.campaign import SendAction


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the campaign file")
    p.add_argument(
        "--to",
        metavar="PHONE[,PHONE...]",
        help="the numbers to send the test to (default: the campaign's test_recipients)",
    )
    p.add_argument("--step", metavar="ID", help="the send step (default: the first)")
    p.add_argument(
        "--recipient",
        metavar="N",
        type=int,
        default=1,
        help="whose message: the N-th recipient of the list (default: 1, the first)",
    )
    add_state(p, log=True)
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="send to the built-in provider emulators on 127.0.0.1",
    )


def main(args: argparse.Namespace) -> int:
    """Send one recipient's message, rendered as the campaign would, to test numbers.

    Recorded in the journal as a test send: never counted in the campaign's
    figures, never continued by `run`, never in the way of the real send.
    Exit status as for `run`.
    """
    settings = Settings(
        state=args.state,
        log=Path(args.log) if args.log else None,
        sandbox=args.sandbox,
    )
    result = test_file(
        Path(args.file),
        settings,
        to=args.to,
        step_id=args.step,
        position=args.recipient,
        out=sys.stdout,
    )
    return result.exit_code


def test_file(
    path: Path,
    settings: Settings,
    *,
    to: str | None,
    step_id: str | None,
    position: int,
    out: TextIO,
    env: Mapping[str, str] | None = None,
) -> TestResult:
    with session(path, settings, out=out, env=env, owner=None) as s:
        campaign = s.campaign
        numbers = _numbers(to, campaign.default_region) or list(campaign.test_recipients)
        if not numbers:
            raise UsageError(
                f"{path}: no number to send the test to: give --to PHONE[,PHONE...] "
                "or list test_recipients: in the campaign"
            )
        step = send_step(campaign, step_id)
        assert isinstance(step.action, SendAction)
        rendering = pick(campaign, step.action.template, position)
        who = f"row {rendering.row}" if rendering.row else f"recipient {position}"
        out.write(
            f"test of {campaign.name}, step {step.id}: the message of {who} "
            f"({s.log.phone(rendering.phone)}), {rendering.segments} segment(s), to "
            f"{', '.join(numbers)}\n  {rendering.text}\n"
        )
        out.flush()
        result = send_test(
            campaign,
            step,
            rendering,
            numbers,
            journal=s.journal,
            log=s.log,
            providers=s.providers,
            sandbox=s.sandbox_root,
        )
        out.write(f"test run {result.run_id}: {result.message}\n")
        out.write(f"journal: {s.journal.where}  events: {s.log_path}\n")
        return result


def _numbers(text: str | None, region: str | None) -> list[str]:
    """``--to`` as E.164 numbers, each bad one a usage error naming it."""
    if not text:
        return []
    normalise = PhoneNormalizer(region)
    numbers: list[str] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        try:
            phone = normalise(raw)
        except InvalidPhone as e:
            raise UsageError(f"--to {raw!r}: not a phone number to send to: {e}") from e
        if phone not in numbers:
            numbers.append(phone)
    return numbers
