"""Arguments several commands share."""

from __future__ import annotations

import argparse

STATE_HELP = (
    "journal database (default: $CAMPAIGN_RUNNER_STATE "
    "or ~/.local/state/campaign-runner/journal.db)"
)


def add_state(p: argparse.ArgumentParser, *, log: bool = False) -> None:
    """``--state`` (and ``--log``): where the journal and the event log are."""
    p.add_argument("--state", metavar="PATH", help=STATE_HELP)
    if log:
        p.add_argument(
            "--log",
            metavar="PATH",
            help="JSON Lines event log (default: events.jsonl beside the journal)",
        )


def add_format(p: argparse.ArgumentParser, *choices: str) -> None:
    """``--format text|json[|csv]``: for people, or for other tools."""
    p.add_argument(
        "--format",
        choices=("text", *(choices or ("json",))),
        default="text",
        help="output format",
    )
