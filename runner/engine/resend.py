"""Choosing what a retry sends again, within the same run.

Failed messages are queued again only for reasons that may pass next time
(the provider was down, asked us to slow down, or its answer was garbled);
a ``rejected`` one (an invalid number, an opt-out) only when the user names
the reason. Unknown outcomes are never queued blindly: the send step first
settles them from the provider's report, and what stays unknown is resent only
on the user's explicit word, since it may be received twice. Each resend keeps
the earlier outcome in the message's history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from runner.journal.journal import Journal
from runner.model.campaign import Campaign, SendAction

RETRYABLE = ("transient", "rate_limited", "protocol")
# kinds a failed message can have (template: could not be rendered, which a
# retry cannot mend: the file must change, and a resumed run renders it again)
FAILURE_KINDS = ("transient", "rate_limited", "protocol", "rejected", "auth")


@dataclass(frozen=True)
class Choice:
    failed: bool = False
    unknown: bool = False
    reasons: Sequence[str] = RETRYABLE
    provider: str | None = None


def send_steps(campaign: Campaign) -> list[str]:
    return [s.id for s in campaign.steps if isinstance(s.action, SendAction)]


def queue_failed(
    journal: Journal, run_id: str, steps: Iterable[str], choice: Choice
) -> dict[str, int]:
    """Queue again the failed messages the choice covers; per step, how many."""
    return _queue(
        journal,
        run_id,
        steps,
        "failed",
        f"retried: failed ({', '.join(choice.reasons)})",
        choice.provider,
        error_kinds=list(choice.reasons),
    )


def queue_unknown(
    journal: Journal, run_id: str, steps: Iterable[str], provider: str | None
) -> dict[str, int]:
    """Queue again every unknown outcome (the user said so); per step, how many."""
    reason = "resent: outcome unknown (the user's choice; may be received twice)"
    return _queue(journal, run_id, steps, "unknown", reason, provider)


def _queue(
    journal: Journal,
    run_id: str,
    steps: Iterable[str],
    status: str,
    reason: str,
    provider: str | None,
    **only: Any,
) -> dict[str, int]:
    queued = {}
    for step in steps:
        n = journal.resend(run_id, step, [status], reason, provider=provider, **only)
        if n:
            queued[step] = n
    return queued


def unknown_by_step(
    journal: Journal, run_id: str, steps: Iterable[str]
) -> dict[str, int]:
    found = {}
    for step in steps:
        n = journal.message_counts(run_id, step).get("unknown", 0)
        if n:
            found[step] = n
    return found
