"""What a send step's counts come to: ok, failed, or unsettled, and why, in words.

A send step is ok only when every message was sent, or the failed ones are
within its ``max_failed``; a message whose outcome is still unknown makes it
``unsettled``, never ok, with the command that settles it. A template that
cannot be rendered for some recipient stops the step before its first call.
"""

from __future__ import annotations

from typing import Any

from runner.audience.failures import Failures
from runner.engine.ahead import Ahead
from runner.engine.context import RunContext, StepResult
from runner.engine.reads import step_result
from runner.engine.rounds import RoundsResult, refusal
from runner.engine.tally import Tally
from runner.journal.queries import Cause
from runner.journal.tables import NOT_SENT_BY_CHOICE
from runner.model.campaign import SendAction, Step


def render_verdict(
    ctx: RunContext, step: Step, action: SendAction, detail: dict[str, Any]
) -> StepResult | None:
    """A failed step when more messages cannot be rendered than ``max_failed``
    allows (nothing is sent then); None when the step may go on."""
    counts = ctx.journal.message_counts(ctx.run_id, step.id)
    failed, grouped = unrendered(ctx, step, detail)
    total = meant(counts)
    if not failed or action.max_failed.allows(failed, total):
        return None
    sent = counts.get("sent", 0)
    where = "nothing was sent" if not sent else f"{sent} were sent before"
    return step_result(
        "failed",
        f"{failed} of {total} messages cannot be rendered, more than max_failed "
        f"{action.max_failed} allows ({where}): {_why_unrendered(ctx, step, grouped)}",
        counts=counts,
        planned=True,
        recipients=detail.get("recipients", {}),
        **_kept(detail),
    )


def sample_verdict(
    ctx: RunContext, step: Step, action: SendAction, ahead: Ahead
) -> StepResult | None:
    """``render_verdict`` on the first messages of a plan that goes on while
    the step sends: refused, nothing is sent and the rest is not planned."""
    failed, planned = ahead.sample_failures.total, ahead.sample_size
    if not failed or action.max_failed.allows(failed, planned):
        return None
    return step_result(
        "failed",
        f"{failed} of the first {planned} messages cannot be rendered, more than "
        f"max_failed {action.max_failed} allows (nothing was sent): "
        + "; ".join(ahead.sample_failures.lines()),
        counts=ctx.journal.message_counts(ctx.run_id, step.id),
        planned=True,
        unrendered=ahead.sample_failures.as_json(),
    )


def judge(
    ctx: RunContext,
    step: Step,
    action: SendAction,
    tally: Tally,
    rounds: RoundsResult,
    detail: dict[str, Any],
) -> StepResult:
    journal, run_id = ctx.journal, ctx.run_id
    counts = journal.message_counts(run_id, step.id)
    summary = {
        "counts": counts,
        "retries": tally.retries,
        "failed_by_reason": dict(tally.failed),
        "planned": True,
        "recipients": detail.get("recipients", {}),
        "rounds": rounds.rounds,
        **_kept(detail),
    }
    if ctx.stop.is_set():
        return step_result("interrupted", "interrupted", **summary)
    total = meant(counts)
    if not total:
        held = sum(counts.get(s, 0) for s in NOT_SENT_BY_CHOICE)
        if held:  # every recipient suppressed, capped or cancelled: nothing to do
            text = _summary(counts, tally, [], action)
            return step_result("succeeded", f"nothing to send: {text}", **summary)
        return step_result("failed", "no recipient to send to", **summary)
    failed_causes = journal.causes(run_id, step.id, "failed")
    grouped = unrendered(ctx, step, detail)[1]
    text = _summary(counts, tally, failed_causes, action, grouped)
    waiting = counts.get("queued", 0) + counts.get("pending", 0)
    if waiting:
        why = "; ".join(refusal(n, e) for n, e in rounds.down.items())
        return step_result(
            "failed", f"{text}; {waiting} not sent: {why or 'stopped'}", **summary
        )
    failed = counts.get("failed", 0)
    if failed and not action.max_failed.allows(failed, total):
        return step_result(
            "failed",
            f"{text}; {failed} failed, more than max_failed {action.max_failed} allows",
            **summary,
        )
    unknown = counts.get("unknown", 0)
    if unknown:
        summary["unsettled"] = unknown
        why = _unsettled_why(ctx, step, rounds)
        then = (
            " (each then gets a new PIN, which voids one they may have)"
            if action.pin is not None
            else ""
        )
        return step_result(
            "unsettled",
            f"{text}; {unknown} unsettled ({why}): settle them with "
            f"`campaign-runner retry {run_id} --unknown{ctx.options.command_args}`"
            + then,
            **summary,
        )
    if failed:
        text += f" (within max_failed {action.max_failed})"
    return step_result("succeeded", text, **summary)


def _kept(detail: dict[str, Any]) -> dict[str, Any]:
    """What planning found that a resumed step shows again (its render failures)."""
    return {"unrendered": detail["unrendered"]} if "unrendered" in detail else {}


def meant(counts: dict[str, int]) -> int:
    """The messages a step means to send: not those skipped by choice."""
    return sum(counts.values()) - sum(counts.get(s, 0) for s in NOT_SENT_BY_CHOICE)


def explain(causes: list[Cause], grouped: Failures | None = None) -> str:
    """``rejected 21 x3; undefined variable 'nmae' in variant 'en': 793
    recipients, first at contacts.csv:12``: one entry per cause, the commonest
    first; with ``grouped``, the messages that cannot be rendered as planning
    grouped them (runner.audience.failures)."""
    parts = []
    for c in causes:
        if c.kind == "template" and grouped is not None:
            continue
        first = f" (first: {c.first})" if c.first and c.kind == "template" else ""
        name = c.code if c.kind == "template" else f"{c.kind} {c.code}".strip()
        parts.append(f"{name} x{c.count}{first}")
    if grouped is not None:
        parts += grouped.lines()
    return "; ".join(parts)


def unrendered(
    ctx: RunContext, step: Step, detail: dict[str, Any]
) -> tuple[int, Failures | None]:
    """How many of the step's messages cannot be rendered, and by cause as its
    planning grouped them; None when they are not all there (a plan cut short
    and continued, an older journal): the journal's own causes are shown then."""
    failed = ctx.journal.count_failed(ctx.run_id, step.id, "template")
    data = detail.get("unrendered")
    if not failed or not isinstance(data, dict):
        return failed, None
    try:
        grouped = Failures.from_json(data)
    except (KeyError, TypeError, ValueError):  # not what this version writes
        return failed, None
    return failed, grouped if grouped.total == failed else None


def _why_unrendered(ctx: RunContext, step: Step, grouped: Failures | None) -> str:
    if grouped is not None:
        return "; ".join(grouped.lines())
    causes = ctx.journal.causes(ctx.run_id, step.id, "failed")
    return explain([c for c in causes if c.kind == "template"])


# how a step's summary says its messages went out, by its kind of call
DONE = {"send": "sent", "pin": "sent PINs", "fire": "fired"}


def _summary(
    counts: dict[str, int],
    tally: Tally,
    failed: list[Cause],
    action: SendAction,
    grouped: Failures | None = None,
) -> str:
    done = DONE[action.call]
    parts = [f"{done} {counts.get('sent', 0)}", f"failed {counts.get('failed', 0)}"]
    if counts.get("unknown"):
        parts.append(f"unknown {counts['unknown']}")
    for held in (*NOT_SENT_BY_CHOICE, "deferred"):
        if counts.get(held):
            parts.append(f"{held} {counts[held]}")
    if tally.retries:
        parts.append(f"retries {tally.retries}")
    text = ", ".join(parts)
    if failed:
        text += f" ({explain(failed, grouped)})"
    return text


def _unsettled_why(ctx: RunContext, step: Step, rounds: RoundsResult) -> str:
    """Why outcomes stayed unknown: the lost answers, and why no report settled them."""
    lost = ctx.journal.causes(ctx.run_id, step.id, "unknown")
    reasons = ["answers lost: " + ", ".join(f"{c.code} x{c.count}" for c in lost)]
    settlement = rounds.settlement
    reasons += settlement.problems
    for name in settlement.unsettleable:
        reasons.append(f"{name} has no per-recipient report to settle them from")
    return "; ".join(reasons)
