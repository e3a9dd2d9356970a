"""The check_credits step: the balance against a number or an expression."""

from __future__ import annotations

from typing import Any

from runner.audience.preview import send_totals as totals
from runner.audience.templates import Renderer
from runner.engine.context import RunContext, StepResult
from runner.engine.reads import retry_read, step_result
from runner.model.campaign import CheckCreditsAction, SendAction, Step
from runner.providers.base import ProviderCallError


def send_totals(ctx: RunContext, step_id: str) -> Any:
    target = ctx.campaign.step(step_id).action
    if not isinstance(target, SendAction):
        raise ValueError(f"step {step_id!r} is not a send step")
    return totals(ctx.campaign, target.template)


def check_credits(ctx: RunContext, step: Step) -> StepResult:
    action = step.action
    assert isinstance(action, CheckCreditsAction)
    provider = ctx.providers[action.provider]
    minimum = action.min
    if action.min_expr is not None:
        cache: dict[str, Any] = {}

        def totals(sid: str) -> Any:
            if sid not in cache:
                cache[sid] = send_totals(ctx, sid)
            return cache[sid]

        value = Renderer(ctx.campaign).evaluate(
            action.min_expr,
            {
                "segments": lambda sid: totals(sid).segments,
                "messages": lambda sid: totals(sid).messages,
                "vars": ctx.campaign.vars,
            },
        )
        minimum = float(value)
    if ctx.options.dry_run:
        return step_result(
            "succeeded", f"dry run: would require {minimum:g} credits", min=minimum
        )
    try:
        balance = retry_read(ctx, action.provider, provider.balance)
    except ProviderCallError as e:
        return step_result("failed", f"cannot read the balance: {e.error}", min=minimum)
    ctx.log.emit(
        "credits.checked",
        ctx.run_id,
        step.id,
        provider=action.provider,
        credits=balance.credits,
        unit=balance.unit,
        min=minimum,
    )
    detail = {"credits": balance.credits, "unit": balance.unit, "min": minimum}
    if minimum is not None and balance.credits < minimum:
        return step_result(
            "failed",
            f"{balance.credits:g} {balance.unit} available, {minimum:g} required",
            **detail,
        )
    return step_result(
        "succeeded",
        f"{balance.credits:g} {balance.unit} available"
        + (f" (>= {minimum:g})" if minimum is not None else ""),
        **detail,
    )
