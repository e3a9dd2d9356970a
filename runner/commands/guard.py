"""A question before a real send that may not be meant: a one-off campaign that
already ran, or more recipients than ``$CAMPAIGN_RUNNER_CONFIRM_ABOVE``.

Asked only on a terminal (``--yes`` skips it); the sandbox, dry runs, the daemon
and scripts without a terminal are never asked.
"""

from __future__ import annotations

import os
from itertools import islice
from typing import TextIO

from runner.audience.recipients import iter_recipients
from runner.errors import UsageError
from runner.model.campaign import Campaign

CONFIRM_ABOVE_ENV = "CAMPAIGN_RUNNER_CONFIRM_ABOVE"
CONFIRM_ABOVE = 1000


def threshold() -> int:
    text = os.environ.get(CONFIRM_ABOVE_ENV, "").strip()
    if not text:
        return CONFIRM_ABOVE
    if not text.isdigit():
        raise UsageError(f"${CONFIRM_ABOVE_ENV}={text!r}: expected a whole number")
    return int(text)


def question(campaign: Campaign, *, again: bool) -> str | None:
    """What to ask before this real send, or None when there is nothing to ask."""
    if again:
        return (
            f"{campaign.name} already ran for real. Send to its recipients without "
            "a message yet?"
        )
    limit = threshold()
    # counting stops past the limit: a ten-million-row file costs no full pass
    seen = sum(1 for _ in islice(iter_recipients(campaign), limit + 1))
    if seen > limit:
        return (
            f"{campaign.name} sends for real to more than {limit:,} recipients "
            f"(${CONFIRM_ABOVE_ENV}). Send?"
        )
    return None


def confirmed(text: str, ask: TextIO, out: TextIO) -> bool:
    out.write(f"{text} [y/N] ")
    out.flush()
    return ask.readline().strip().lower() in ("y", "yes")
