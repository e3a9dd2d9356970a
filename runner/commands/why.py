"""``campaign-runner why``: what the journal knows about one number, newest first."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from runner.audience.phones import InvalidPhone, PhoneNormalizer, mask_phone
from runner.commands.args import add_format, add_state
from runner.commands.output import (
    emit,
    excerpt,
    left_out_reason,
    open_journal,
    reason_of,
)
from runner.errors import RunnerError, UsageError
from runner.journal.journal import Journal
from runner.journal.trail import Outcome, Trail, trail_of
from runner.loader.load import load

COLUMNS = [
    "at",
    "campaign",
    "run",
    "mode",
    "step",
    "status",
    "reason",
    "variant",
    "delivery",
    "text",
]
MODES = {"sandbox": "rehearsal", "test": "test send"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("phone", metavar="PHONE", help="the number, as you have it")
    p.add_argument("name", nargs="?", metavar="NAME", help="only this campaign's runs")
    p.add_argument(
        "--region",
        metavar="CC",
        help="read a number written without + as of this country (ISO 3166, e.g. "
        "ES; default: NAME's default_region)",
    )
    add_state(p)
    p.add_argument(
        "--show-phones", action="store_true", help="full phone numbers, not masked"
    )
    add_format(p, "json")


def main(args: argparse.Namespace) -> int:
    """Why a number got what it got: every campaign, run, step and outcome for
    it, the rows left out and why, and its suppression-list entries."""
    return why(
        args.state,
        args.phone,
        args.name,
        args.region,
        args.show_phones,
        args.format,
        sys.stdout,
    )


def why(
    state: str | None,
    given: str,
    name: str | None,
    region: str | None,
    show_phones: bool,
    fmt: str,
    out: TextIO,
) -> int:
    if not given.strip():
        raise UsageError("why: PHONE is empty")
    journal = open_journal(state)
    try:
        if name is not None and journal.latest_run(name) is None:
            raise UsageError(f"no campaign {name!r} in {journal.where}")
        region = region or _region_of(journal, name)
        phone = _normalise(given, region)
        trail = trail_of(journal, phone, given, name)
    finally:
        journal.close()
    shown = _shown(phone or given, show_phones)
    if trail.empty:
        scope = f" in campaign {name!r}" if name else ""
        hint = ""
        if phone is None and not given.lstrip().startswith("+") and region is None:
            hint = " (a national number: pass --region, e.g. --region ES)"
        raise RunnerError(
            f"{shown} appears nowhere{scope}: no message, no row left out, "
            f"not on the suppression list{hint}"
        )
    rows = [_row(o, show_phones) for o in trail.outcomes]
    if fmt == "json":
        json.dump(_as_json(trail, rows, show_phones), out, indent=2, default=str)
        out.write("\n")
        return 0
    runs = {o.run["id"] for o in trail.outcomes}
    campaigns = {o.run["campaign"] for o in trail.outcomes}
    as_given = f" (as given: {_shown(given, show_phones)})" if phone != given else ""
    if phone is None:
        as_given = " (not a valid number: looked up as written)"
    out.write(
        f"{shown}{as_given}: {_n(len(rows), 'outcome')} in {_n(len(runs), 'run')} "
        f"of {_n(len(campaigns), 'campaign')}\n"
    )
    for s in trail.suppressions:
        mode = "real" if s.mode == "real" else "rehearsals"
        out.write(
            f"on the suppression list ({mode}, scope {s.scope}) since {s.added_at}: "
            f"{s.reason}, {s.source}\n"
        )
    if rows:
        emit([{**r, "text": excerpt(r["text"] or "")} for r in rows], fmt, out, COLUMNS)
    return 0


def _normalise(given: str, region: str | None) -> str | None:
    """The number in E.164, or None when it cannot be read (an invalid row
    may still have it, as written)."""
    try:
        return PhoneNormalizer(region)(given)
    except InvalidPhone:
        return None


def _region_of(journal: Journal, name: str | None) -> str | None:
    """The campaign's ``default_region``, from the file its latest run read."""
    run = journal.latest_run(name) if name is not None else None
    if run is None:
        return None
    campaign = load(Path(run["campaign_path"])).campaign
    return campaign.default_region if campaign is not None else None


def _row(o: Outcome, show_phones: bool) -> dict[str, Any]:
    run = o.run
    row: dict[str, Any] = {
        "at": o.at,
        "campaign": run["campaign"],
        "run": run["id"],
        "mode": MODES.get(run["mode"], "real"),
        "step": o.step_id or "-",
        "kind": o.kind,
        "status": o.status,
    }
    if o.message is not None:
        m = o.message
        row |= {
            "reason": reason_of(m),
            "variant": m["variant"],
            "delivery": m["delivery_status"],
            "text": m["text"],
            "provider": m["provider"],
            "provider_message_id": m["provider_message_id"],
            "attempts": m["attempts"],
            "sent_at": m["sent_at"],
            "history": [
                {
                    "status": h["status"],
                    "reason": reason_of(h),
                    "resent": h["reason"],
                    "at": h["at"],
                }
                for h in m["history"]
            ],
        }
    elif o.left_out is not None:
        s = o.left_out
        row |= {
            "reason": left_out_reason(s),
            "variant": None,
            "delivery": None,
            "text": None,
            "given": _shown(s["given"] or "", show_phones),
        }
    return row


def _as_json(trail: Trail, rows: list[dict[str, Any]], show: bool) -> dict[str, Any]:
    return {
        "phone": _shown(trail.phone, show) if trail.phone else None,
        "given": _shown(trail.given, show),
        "suppressions": [
            {**asdict(s), "phone": _shown(s.phone, show)} for s in trail.suppressions
        ],
        "outcomes": rows,
    }


def _shown(phone: str, show: bool) -> str:
    return phone if show else mask_phone(phone)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")
