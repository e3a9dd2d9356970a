"""``campaign-runner history``: past runs with their message counts and outcome."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from runner.commands.args import add_format, add_state
from runner.commands.output import emit, open_journal, run_record
from runner.journal.tables import UNSETTLED

# the message counts each run shows, in this order; ``pending`` is every message
# not yet settled (queued, pending, deferred), ``unknown`` apart
# ``fired``: a fire step's injected messages, apart from the texts ``sent``
COUNTED = (
    "sent",
    "fired",
    "failed",
    "unknown",
    "pending",
    "cancelled",
    "suppressed",
    "capped",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME", help="only runs of this campaign")
    add_state(p)
    p.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    add_format(p, "json", "csv")


def main(args: argparse.Namespace) -> int:
    """List past runs with their message counts and outcome."""
    return history(args.state, args.name, args.limit, args.format, sys.stdout)


def history(
    state: str | None, name: str | None, limit: int, fmt: str, out: TextIO
) -> int:
    journal = open_journal(state)
    try:
        runs = journal.list_runs(name, limit)
    finally:
        journal.close()
    rows = []
    for r in runs:
        c = r.pop("counts")
        shown = {k: c.get(k, 0) for k in COUNTED}
        shown["pending"] = sum(c.get(k, 0) for k in UNSETTLED)
        fired = int(r.pop("fired", 0))
        shown["fired"], shown["sent"] = fired, shown["sent"] - fired
        rows.append(
            {
                **run_record(r),
                "occurrence": r.get("occurrence") or "-",
                **shown,
                "counts": c,  # every status, for machines
            }
        )
    cols = [
        "id",
        "campaign",
        "occurrence",
        "mode",
        "status",
        "started_at",
        "finished_at",
        *COUNTED,
    ]
    if fmt == "text" and not rows:
        out.write("no runs\n")
        return 0
    emit(rows, fmt, out, cols)
    return 0
