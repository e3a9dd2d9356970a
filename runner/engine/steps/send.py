"""The send step: plan every message, dispatch it in rounds, judge the outcome."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from runner.audience.recipient import RecipientStats
from runner.audience.zones import ZoneFinder
from runner.engine.ahead import Ahead
from runner.engine.context import RunContext, StepResult
from runner.engine.holds import (
    cap_of,
    hold_back,
    learn_refusals,
    next_release,
    next_zone_opening,
    run_mode,
)
from runner.engine.pins import PinKeeper, pin_key
from runner.engine.plan import (
    LeftOutRows,
    PlanResult,
    follow_renderings,
    plan,
    renderings,
)
from runner.engine.progress import Ticker
from runner.engine.reads import step_result
from runner.engine.rounds import send_rounds
from runner.engine.scheduler import in_window, next_window_open
from runner.engine.steps.verdict import judge, render_verdict, sample_verdict
from runner.engine.tally import Tally
from runner.errors import StepFailed
from runner.journal.journal import Journal
from runner.journal.suppressions import BatchHold
from runner.model.campaign import SendAction, Step

# statuses a step's progress counts as still to do when it starts
TO_DO = ("queued", "pending", "unknown")


def send(ctx: RunContext, step: Step) -> StepResult:
    """A send step (or a fire step: the same journal, another call)."""
    action = step.action
    assert isinstance(action, SendAction)
    if action.pin is None or ctx.options.dry_run:
        return _send(ctx, step, action, None)
    try:
        key = pin_key(action.pin, os.environ, sandbox=run_mode(ctx) == "sandbox")
        export = ctx.options.export_pins
        pins = PinKeeper(key, Path(export) if export else None)
    except StepFailed as e:
        return step_result("failed", str(e))
    try:
        result = _send(ctx, step, action, pins)
    finally:
        pins.close()
    # where ``pin verify`` finds the key of this step's hashes
    result.detail["pin_key"] = action.pin.key_var
    return result


def _send(
    ctx: RunContext, step: Step, action: SendAction, pins: PinKeeper | None
) -> StepResult:
    journal, run_id = ctx.journal, ctx.run_id
    interrupted = journal.settle_interrupted(run_id, step.id)
    if interrupted:
        ctx.log.emit("step.unknown_after_crash", run_id, step.id, count=interrupted)
    if ctx.options.resend_unknown:
        n = journal.resend(
            run_id, step.id, ["unknown"], "resent: --resend-unknown (the user's choice)"
        )
        if n:
            ctx.log.emit("step.resend_unknown", run_id, step.id, count=n)
    detail, ahead = _plan(ctx, step, action)
    refused = (
        render_verdict(ctx, step, action, detail)
        if ahead is None
        else sample_verdict(ctx, step, action, ahead)
    )
    if refused is not None:
        if ahead is not None:
            ahead.stop()
        return refused
    try:
        return _send_planned(ctx, step, action, pins, detail, ahead)
    finally:
        if ahead is not None:  # (an error raised above: planning stops too)
            ahead.stopping.set()


def _send_planned(
    ctx: RunContext,
    step: Step,
    action: SendAction,
    pins: PinKeeper | None,
    detail: dict[str, Any],
    ahead: Ahead | None,
) -> StepResult:
    journal, run_id = ctx.journal, ctx.run_id
    # suppressed numbers, frequency caps and the recipients' own windows
    held = hold_back(ctx, step)
    if ctx.options.dry_run:
        counts = journal.message_counts(run_id, step.id)
        return step_result(
            "succeeded",
            f"dry run: {counts.get('queued', 0)} messages would be sent",
            planned=True,
            counts=counts,
        )
    window = step.timing.window
    tz = ctx.campaign.timezone

    def window_open() -> bool:
        if window is None or ctx.options.ignore_windows:
            return True
        if window.per_recipient:  # still open in every zone being sent to
            now = ctx.clock()
            return all(in_window(window, now, ZoneInfo(z)) for z in held.open_zones)
        return in_window(window, ctx.clock(), tz)

    def keep_going() -> bool:
        failed = ahead is not None and ahead.failed  # the rest cannot be planned
        return window_open() and not ctx.halted() and not failed

    counts, before = _counts(journal, run_id, step.id, ahead)
    tally = Tally(unknown=counts.get("unknown", 0))
    total = sum(counts.get(s, 0) for s in TO_DO)
    progress = Ticker(ctx.log, run_id, step.id, tally, total, ahead, before)
    control = ctx.control
    planned = ahead.complete if ahead is not None else None
    try:
        while True:
            rounds = send_rounds(ctx, step, tally, keep_going, pins, planned)
            if control is None or not control.paused() or ctx.stop.is_set():
                break
            control.wait_while_paused(ctx.stop)  # resumed: send the rest
            if control.halted() or ctx.stop.is_set():
                break
    finally:
        progress.stop()
    if ahead is not None:  # what the plan found, once over (at once if stopping)
        if ctx.stop.is_set() or ctx.halted() or rounds.down:
            ahead.stopping.set()
        detail = ahead.join() or detail
        _tell_held(ctx, step, ahead.hold)
    learn_refusals(ctx, step, action.providers)
    if control is not None and control.cancelled():
        by = control.state.by or "someone"
        n = journal.cancel(run_id, step.id, None, f"cancelled by {by}")
        return step_result(
            "cancelled",
            f"cancelled by {by}: {n} queued messages not sent",
            planned=True,
            counts=journal.message_counts(run_id, step.id),
        )
    if (
        not ctx.stop.is_set()
        and window is not None
        and window.per_recipient
        and not ctx.options.ignore_windows
        and not rounds.down
    ):
        # a zone closed mid-send: sort again at once; else the next opening
        opening = ctx.clock() if not window_open() else next_zone_opening(ctx, step)
        if opening is not None:
            counts = journal.message_counts(run_id, step.id)
            return StepResult(
                "paused",
                f"{counts.get('deferred', 0)} waiting for the window in their own "
                "time zone",
                {"planned": True, "counts": counts},
                opening,
            )
    elif (
        not ctx.stop.is_set()
        and window is not None
        and not window_open()
        and not rounds.down
    ):
        counts = journal.message_counts(run_id, step.id)
        waiting = counts.get("queued", 0) + counts.get("pending", 0)
        if waiting:
            resume = next_window_open(window, ctx.clock(), tz)
            return StepResult(
                "paused",
                f"outside the sending window, {waiting} queued",
                {"planned": True, "counts": counts},
                resume,
            )
    release = None if ctx.stop.is_set() or rounds.down else next_release(ctx, step)
    if release is not None:  # over the frequency cap now: the rest when it allows
        counts = journal.message_counts(run_id, step.id)
        return StepResult(
            "paused",
            f"{counts.get('deferred', 0)} deferred by the frequency cap",
            {"planned": True, "counts": counts},
            max(release, ctx.clock()),
        )
    return judge(ctx, step, action, tally, rounds, detail)


def _tell_held(ctx: RunContext, step: Step, hold: BatchHold) -> None:
    """What the batches planned while the step sent held, as ``hold_back`` tells."""
    if not hold.suppressed and not hold.capped:
        return
    cap = hold.cap
    deferred = cap is not None and cap.defer
    ctx.log.emit(
        "step.held",
        ctx.run_id,
        step.id,
        at="plan",
        suppressed=hold.suppressed,
        capped=0 if deferred else hold.capped,
        deferred=hold.capped if deferred else 0,
        cap=str(cap) if cap is not None else None,
    )


def _counts(
    journal: Journal, run_id: str, step_id: str, ahead: Ahead | None
) -> tuple[dict[str, int], int]:
    """The step's counts, and with a plan still growing what it had counted when
    they were read (the progress line's total grows from there)."""
    if ahead is None:
        return journal.message_counts(run_id, step_id), 0
    with ahead.lock:  # no batch between the writer and the count meanwhile
        journal.writer.flush()
        return journal.message_counts(run_id, step_id), ahead.to_send


def _plan(
    ctx: RunContext, step: Step, action: SendAction
) -> tuple[dict[str, Any], Ahead | None]:
    """Plan the step's messages, once; again for what was never called when the
    campaign file changed under a resumed run.

    A plan longer than ``Ahead``'s sample goes on in a thread while the step
    sends (returned, to be joined); not for a resumed run's new plan, a window
    on the recipients' own clocks (their zones are sorted over the whole plan)
    or a dry run, which plan everything first."""
    journal, run_id = ctx.journal, ctx.run_id
    detail: dict[str, Any] = (
        journal.step_status(run_id).get(step.id, {}).get("detail", {})
    )
    again = bool(detail.get("planned")) and ctx.rerender
    if detail.get("planned") and not again:
        return detail, None
    left_out = LeftOutRows(journal, run_id, step.id)
    stats = RecipientStats(on_skip=left_out)
    ctx.recipient_stats = stats
    journal.forget_skipped(run_id, step.id)
    window = step.timing.window
    zones = (
        ZoneFinder(window, ctx.campaign.timezone)
        if window is not None and window.per_recipient
        else None
    )
    messages = (
        follow_renderings(
            ctx.campaign, action.template, journal, run_id, action.follow, stats, zones
        )
        if action.follow is not None
        else renderings(ctx.campaign, action.template, stats, zones)
    )

    def planning(ahead: Ahead | None) -> dict[str, Any] | None:
        try:
            result = plan(
                journal,
                run_id,
                step.id,
                action.providers[0],
                messages,
                rerender=again,
                left_out=left_out,
                ahead=ahead,
            )
        finally:  # a plan stopped early: the recipients' files closed in this thread
            messages.close()
        return _planned(ctx, step, action, result, stats) if result.complete else None

    if again or zones is not None or ctx.options.dry_run:
        return planning(None) or {}, None
    hold = BatchHold(
        run_id,
        step.id,
        run_mode(ctx),
        ctx.campaign.kind == "transactional",
        cap_of(ctx),
        ctx.clock,
    )
    ahead = Ahead(hold, lambda: journal.message_counts(run_id, step.id).get("queued", 0))
    ahead.start(lambda: planning(ahead))
    ahead.sampled.wait()
    if ahead.complete.is_set():  # all planned within the sample: as before
        return ahead.join() or {}, None
    return {"planned": True, "recipients": stats.as_dict()}, ahead


def _planned(
    ctx: RunContext,
    step: Step,
    action: SendAction,
    result: PlanResult,
    stats: RecipientStats,
) -> dict[str, Any]:
    """Record (and tell) what a complete plan found; the step's detail."""
    run_id = ctx.run_id
    counts = stats.as_dict()
    detail: dict[str, Any] = {"planned": True, "recipients": counts}
    if action.pin is not None:
        detail["pin_key"] = action.pin.key_var
    if result.unrendered.total:
        detail["unrendered"] = result.unrendered.as_json()
    for bad in stats.invalid_rows:
        ctx.log.emit(
            "recipient.invalid",
            run_id,
            step.id,
            where=bad.location,
            to=bad.phone,
            reason=bad.reason,
        )
    ctx.journal.finish_step(run_id, step.id, "running", detail, step.kind)
    ctx.log.emit(
        "step.planned",
        run_id,
        step.id,
        added=result.added,
        rerendered=result.rerendered,
        dropped=result.dropped,
        **counts,
    )
    return detail
