"""The send step: plan every message, dispatch, settle unknowns, summarise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner.audience.recipient import RecipientStats
from runner.audience.recipients import iter_recipients
from runner.audience.templates import Renderer
from runner.engine.context import RunContext, StepResult
from runner.engine.dispatch import Dispatcher
from runner.engine.plan import plan
from runner.engine.progress import Ticker
from runner.engine.scheduler import in_window, next_window_open
from runner.engine.steps.reads import step_result
from runner.engine.steps.reconcile import reconcile_unknown
from runner.engine.tally import Tally
from runner.errors import TemplateError
from runner.model.campaign import SendAction, Step


def _rendered(
    ctx: RunContext, action: SendAction
) -> Iterator[tuple[str, int | None, str | None, int, str | None]]:
    renderer = Renderer(ctx.campaign)
    for r in iter_recipients(ctx.campaign, ctx.recipient_stats):
        try:
            out = renderer.render(action.template, r)
        except TemplateError as e:
            yield r.phone, r.row, None, 0, str(e)
            continue
        yield r.phone, r.row, out.text, out.segmentation.segments, None


def send(ctx: RunContext, step: Step) -> StepResult:
    action = step.action
    assert isinstance(action, SendAction)
    journal, run_id = ctx.journal, ctx.run_id
    primary = action.providers[0]
    interrupted = journal.mark_interrupted(run_id, step.id)
    if interrupted:
        ctx.log.emit("step.unknown_after_crash", run_id, step.id, count=interrupted)
    reconcile_unknown(ctx, step)
    if ctx.options.resend_unknown:
        n = journal.requeue(run_id, step.id, ["unknown"])
        if n:
            ctx.log.emit("step.resend_unknown", run_id, step.id, count=n)
    detail = journal.step_status(run_id).get(step.id, {}).get("detail", {})
    if not detail.get("planned"):
        ctx.recipient_stats = RecipientStats()
        added = plan(journal, run_id, step.id, primary, _rendered(ctx, action))
        stats = ctx.recipient_stats
        detail = {"planned": True, "recipients": _stats_dict(stats)}
        for bad in stats.invalid_rows:
            ctx.log.emit(
                "recipient.invalid",
                run_id,
                step.id,
                where=bad.location,
                to=bad.phone,
                reason=bad.reason,
            )
        journal.finish_step(run_id, step.id, "running", detail, step.kind)
        ctx.log.emit("step.planned", run_id, step.id, added=added, **_stats_dict(stats))
    if ctx.options.dry_run:
        counts = journal.message_counts(run_id, step.id)
        return step_result(
            "succeeded",
            f"dry run: {counts.get('queued', 0)} messages would be sent",
            planned=True,
            counts=counts,
        )

    tally = Tally()
    window = step.timing.window
    tz = ctx.campaign.timezone

    def window_open() -> bool:
        return (
            window is None
            or ctx.options.ignore_windows
            or in_window(window, ctx.clock(), tz)
        )

    progress = Ticker(
        ctx.log,
        run_id,
        step.id,
        tally,
        journal.message_counts(run_id, step.id).get("queued", 0),
    )
    down: dict[str, str] = {}
    try:
        # A round sends what is queued; unknown outcomes that the provider's own
        # report settles as "never sent" are queued again for the next round.
        for _round in range(3):
            for name in action.providers:
                if name in down:
                    continue
                provider = ctx.providers[name]
                dispatcher = Dispatcher(
                    journal=journal,
                    log=ctx.log,
                    run_id=run_id,
                    step_id=step.id,
                    provider_name=name,
                    provider=provider,
                    limiter=ctx.limiters[name],
                    policy=provider.config.retry,
                    sender=action.sender or _default_sender(provider),
                    stop=ctx.stop,
                    keep_going=window_open,
                    tally=tally,
                )
                result = dispatcher.run()
                if result.provider_down is None:
                    break
                down[name] = str(result.provider_down)
                if name != action.providers[-1]:
                    ctx.log.emit(
                        "step.failover",
                        run_id,
                        step.id,
                        provider=name,
                        reason=str(result.provider_down),
                    )
            if (
                ctx.stop.is_set()
                or not window_open()
                or len(down) == len(action.providers)
            ):
                break
            if not reconcile_unknown(ctx, step):
                break
    finally:
        progress.stop()
    counts = journal.message_counts(run_id, step.id)
    summary = {
        "counts": counts,
        "retries": tally.retries,
        "failed_by_reason": dict(tally.failed),
        "planned": True,
        "recipients": detail.get("recipients", {}),
    }
    queued = counts.get("queued", 0) + counts.get("pending", 0)
    if ctx.stop.is_set():
        return step_result("interrupted", "interrupted", **summary)
    if queued and not down and not window_open() and window is not None:
        resume = next_window_open(window, ctx.clock(), tz)
        return StepResult(
            "paused", f"outside the sending window, {queued} queued", summary, resume
        )
    text = _send_summary(counts, tally)
    if not sum(counts.values()):
        return step_result("failed", "no recipient to send to", **summary)
    if queued:
        return step_result(
            "failed", f"{text}; {queued} not sent: " + "; ".join(down), **summary
        )
    failed = counts.get("failed", 0)
    if failed and not counts.get("sent", 0):
        return step_result("failed", text, **summary)
    return step_result("succeeded", text, **summary)


def _default_sender(provider: Any) -> str | None:
    value = provider.options.get("sender")
    return None if value is None else str(value)


def _stats_dict(stats: Any) -> dict[str, int]:
    keys = ("read", "invalid", "duplicates", "excluded", "filtered_out", "accepted")
    return {k: int(getattr(stats, k, 0)) for k in keys}


def _send_summary(counts: dict[str, int], tally: Tally) -> str:
    parts = [f"sent {counts.get('sent', 0)}", f"failed {counts.get('failed', 0)}"]
    if counts.get("unknown"):
        parts.append(f"unknown {counts['unknown']}")
    if tally.retries:
        parts.append(f"retries {tally.retries}")
    if tally.failed:
        reasons = ", ".join(f"{k} x{v}" for k, v in tally.failed.most_common(5))
        parts.append(f"({reasons})")
    return ", ".join(parts)
