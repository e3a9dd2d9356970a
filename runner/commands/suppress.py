"""``campaign-runner suppress``: the numbers no campaign sends to, by hand.

The journal also fills the list by itself: STOP replies read by a check_report
step, numbers a provider refused as opted out. Every send step skips what is on
it (a transactional campaign only what is suppressed for ``all``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from runner.audience.phones import InvalidPhone, PhoneNormalizer, mask_phone
from runner.commands.args import add_format, add_state
from runner.commands.output import emit
from runner.errors import UsageError
from runner.journal.journal import Journal
from runner.journal.suppressions import SCOPES, Suppression
from runner.journal.where import locate

COLUMNS = ["phone", "mode", "scope", "reason", "source", "added_at"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="suppress numbers")
    add.add_argument("phones", nargs="+", metavar="PHONE")
    remove = sub.add_parser("remove", help="take numbers off the list")
    remove.add_argument("phones", nargs="+", metavar="PHONE")
    listing = sub.add_parser("list", help="the list, oldest first")
    listing.add_argument(
        "--show-phones", action="store_true", help="full phone numbers, not masked"
    )
    listing.add_argument(
        "--sandbox",
        action="store_true",
        help="the rehearsals' list (STOPs read from the sandbox) instead of the real one",
    )
    add_format(listing, "json", "csv")
    imp = sub.add_parser(
        "import",
        help="suppress every number of a file (CSV with a phone column, or one per line)",
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument(
        "--column", default="phone", help="the CSV column holding numbers (default phone)"
    )
    for q in (add, remove, imp):
        q.add_argument(
            "--region",
            metavar="CC",
            help="read numbers written without + as of this country (ISO 3166, e.g. ES)",
        )
    for q in (add, imp):
        q.add_argument("--reason", default="", help="why, in words (kept as the source)")
        q.add_argument(
            "--scope",
            choices=SCOPES,
            default="marketing",
            help="marketing (default): transactional campaigns may still send; "
            "all: nothing is sent",
        )
    for q in (add, remove, listing, imp):
        add_state(q)


def main(args: argparse.Namespace) -> int:
    """Add, remove, list or import numbers on the journal's suppression list."""
    if args.action == "list":
        return show_list(
            args.state, args.sandbox, args.show_phones, args.format, sys.stdout
        )
    normalise = PhoneNormalizer(args.region)
    if args.action == "import":
        return import_file(args, normalise, sys.stdout, sys.stderr)
    phones = []
    for raw in args.phones:
        try:
            phones.append(normalise(raw))
        except InvalidPhone as e:
            raise UsageError(f"{raw!r} is not a phone number: {e}") from None
    journal = Journal(locate(args.state))
    try:
        if args.action == "remove":
            n = journal.unsuppress(phones)
            sys.stdout.write(
                f"{n} of {len(phones)} numbers taken off the suppression list\n"
            )
            return 0
        source = f"added by hand{': ' + args.reason if args.reason else ''}"
        n = journal.suppress(_entries(phones, args.scope, source))
    finally:
        journal.close()
    sys.stdout.write(
        f"{n} numbers added to the suppression list ({len(phones) - n} already on it)\n"
    )
    return 0


def _entries(phones: list[str], scope: str, source: str) -> list[Suppression]:
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    return [Suppression(p, "real", scope, "manual", source, at) for p in phones]


def import_file(
    args: argparse.Namespace, normalise: PhoneNormalizer, out: TextIO, err: TextIO
) -> int:
    """Every valid number of the file is imported; each bad line is named (exit 1)."""
    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason})") from None
    lines = text.splitlines()
    rows: list[tuple[int, str]]
    if lines and args.column in next(csv.reader([lines[0]])):
        reader = csv.DictReader(lines)
        rows = [(i + 2, r.get(args.column) or "") for i, r in enumerate(reader)]
    else:
        rows = [(i + 1, line) for i, line in enumerate(lines)]
    phones, bad = [], 0
    for line, raw in rows:
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            phones.append(normalise(raw))
        except InvalidPhone as e:
            bad += 1
            err.write(f"{path}:{line}: {raw.strip()!r} is not a phone number: {e}\n")
    source = f"imported from {path.name}{': ' + args.reason if args.reason else ''}"
    journal = Journal(locate(args.state))
    try:
        n = journal.suppress(_entries(phones, args.scope, source))
    finally:
        journal.close()
    out.write(
        f"{n} numbers added to the suppression list from {path} "
        f"({len(phones) - n} already on it, {bad} not phone numbers)\n"
    )
    return 1 if bad else 0


def show_list(
    state: str | None, sandbox: bool, show_phones: bool, fmt: str, out: TextIO
) -> int:
    where = locate(state)
    if not where.exists():
        rows: list[Suppression] = []
    else:
        journal = Journal(where)
        try:
            rows = journal.suppressions("sandbox" if sandbox else "real")
        finally:
            journal.close()
    found = [asdict(r) for r in rows]
    if not show_phones:
        for r in found:
            r["phone"] = mask_phone(r["phone"])
    if fmt == "text" and not found:
        out.write("the suppression list is empty\n")
        return 0
    emit(found, fmt, out, COLUMNS)
    return 0
