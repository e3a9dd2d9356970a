"""``campaign-runner pin verify``: does what someone typed match the PIN a run sent?

The journal holds only keyed hashes of PINs (the key in the environment
variable the step's ``pin.key`` names); this answers yes (exit 0) or no (exit 1)
without the PIN ever being shown or stored anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from runner.audience.phones import InvalidPhone, PhoneNormalizer, mask_phone
from runner.commands.args import add_state
from runner.commands.output import open_journal
from runner.commands.show import find_run
from runner.errors import UsageError
from runner.model.campaign import PIN_KEY_VAR
from runner.model.secrets import pin_matches, stand_in
from runner.model.timeparse import parse_duration

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="pin_command", metavar="ACTION", required=True)
    v = sub.add_parser(
        "verify",
        help="exit 0 when PIN is the one the run last sent PHONE, else 1",
        description="Check what someone typed against the PIN a run last sent "
        "them: yes (exit 0) or no (exit 1). The key of the hashes comes from the "
        "environment variable the step's pin.key names.",
    )
    v.add_argument(
        "run",
        metavar="RUN_ID|NAME",
        help="a run id, last, or a campaign name (its latest run, test sends aside)",
    )
    v.add_argument("phone", metavar="PHONE", help="the number the PIN was sent to")
    v.add_argument(
        "pin", metavar="PIN", help="what was typed; - reads it from standard input"
    )
    v.add_argument("--region", metavar="CC", help="region of a number written without +")
    v.add_argument(
        "--max-age",
        metavar="DURATION",
        help="a PIN sent longer ago than this (10m, 1h) no longer matches",
    )
    v.add_argument("--show-phones", action="store_true", help="the full number")
    add_state(v)


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Check a PIN someone typed against the one a run's PIN step sent them.

    `pin verify RUN_ID|NAME PHONE PIN`: exit 0 (yes) or 1 (no); nothing shows
    or stores the PIN (the journal keeps keyed hashes only).
    """
    typed = sys.stdin.readline().strip() if args.pin == "-" else args.pin.strip()
    try:
        phone = PhoneNormalizer(args.region)(args.phone)
    except InvalidPhone as e:
        raise UsageError(f"PHONE {args.phone!r}: {e}") from None
    try:
        max_age = parse_duration(args.max_age) if args.max_age else None
    except ValueError as e:
        raise UsageError(f"--max-age: {e}") from None
    shown = phone if args.show_phones else mask_phone(phone)
    journal = open_journal(args.state)
    try:
        run = find_run(journal, args.run, tests=False)
        run_id = str(run["id"])
        sent = journal.pins_sent(run_id, phone)
        if not sent:
            out.write(f"no: run {run_id} sent no PIN to {shown}\n")
            return 1
        last = sent[0]  # a later PIN replaces the earlier ones
        var = str(last["detail"].get("pin_key") or PIN_KEY_VAR)
        key = os.environ.get(var) or (
            stand_in(var) if run.get("mode") == "sandbox" else None
        )
        if not key:
            raise UsageError(
                f"environment variable {var} is not set: it holds the key of "
                f"run {run_id}'s PIN hashes"
            )
        where = f"{run_id}/{last['step_id']}/{phone}"
        if not typed or not pin_matches(key, where, typed, str(last["secret_digest"])):
            out.write(f"no: not the PIN run {run_id} last sent {shown}\n")
            return 1
        if max_age is not None and last["sent_at"]:
            age = datetime.now(UTC) - datetime.fromisoformat(str(last["sent_at"]))
            if age > max_age:
                out.write(f"no: the PIN sent to {shown} is older than {args.max_age}\n")
                return 1
        out.write(f"yes: the PIN run {run_id} (step {last['step_id']}) sent {shown}\n")
        return 0
    finally:
        journal.close()
