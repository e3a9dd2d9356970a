"""Everything the journal knows about one number (``campaign-runner why``):
each message it was sent or meant to get, each row of it a plan left out, and
its entries on the suppression list."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.journal.journal import Journal
from runner.journal.suppressions import Suppression


@dataclass(frozen=True)
class Outcome:
    """One step of one run for the number: a message, or why there was none."""

    run: dict[str, Any]  # the run's row (campaign, mode, started_at, ...)
    step_id: str | None
    kind: str  # message | left out
    status: str  # the message's status, or why the row was left out
    at: str  # when: the message's sending (or planning), the row's planning
    message: dict[str, Any] | None = None  # the messages row, with its history
    left_out: dict[str, Any] | None = None  # the skipped_rows row


@dataclass(frozen=True)
class Trail:
    phone: str | None  # E.164, None when the number could not be read
    given: str  # as asked
    outcomes: list[Outcome] = field(default_factory=list)  # newest first
    suppressions: list[Suppression] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.outcomes and not self.suppressions


def trail_of(
    journal: Journal, phone: str | None, given: str, campaign: str | None = None
) -> Trail:
    """The number's trail in the journal (of ``campaign``'s runs), newest first."""
    messages = journal.messages_of(phone, campaign) if phone is not None else []
    skipped = journal.skipped_of(phone, given, campaign)
    runs = journal.runs_by_id(
        sorted({m["run_id"] for m in messages} | {s["run_id"] for s in skipped})
    )
    outcomes = [
        Outcome(
            runs[m["run_id"]],
            m["step_id"],
            "message",
            m["status"],
            m["sent_at"] or m["created_at"],
            message=m,
        )
        for m in messages
        if m["run_id"] in runs
    ] + [
        Outcome(
            runs[s["run_id"]],
            s["step_id"],
            "left out",
            s["reason"],
            s["created_at"],
            left_out=s,
        )
        for s in skipped
        if s["run_id"] in runs
    ]

    def order(o: Outcome) -> tuple[str, int, bool, str]:
        # the latest run first, its last step first, a step's message before
        # the rows of the same number it left out (duplicates)
        position = o.run["steps"].get(o.step_id, ("", None))[1]
        step = position if position is not None else -1
        return (o.run["started_at"], step, o.kind == "message", o.at)

    outcomes.sort(key=order, reverse=True)
    listed = (
        [s for s in journal.suppressions() if s.phone == phone]
        if phone is not None
        else []
    )
    return Trail(phone, given, outcomes, listed)
