"""What each kind of step does: send, check_credits, check_report, wait.

Each executor takes the run context and the step and returns a StepResult; they
talk to providers only through the capabilities in runner.providers.base.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.engine.context import RunContext, StepResult
from runner.engine.steps.credits import check_credits
from runner.engine.steps.reads import step_result
from runner.engine.steps.report import check_report
from runner.engine.steps.send import send
from runner.model.campaign import Step


def step_outcomes(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """What ``when:`` conditions see: ``steps.<id>.ok``, ``.status``, detail figures."""
    return {
        sid: {
            **r.detail,
            "status": r.status,
            "ok": r.status == "succeeded",
            "message": r.message,
        }
        for sid, r in ctx.results.items()
    }


def condition(ctx: RunContext, expression: str) -> bool:
    from runner.audience.templates import Renderer

    renderer = Renderer(ctx.campaign)
    value = renderer.evaluate(
        expression, {"steps": step_outcomes(ctx), "vars": ctx.campaign.vars}
    )
    return bool(value)


def wait(ctx: RunContext, step: Step) -> StepResult:
    """The delay itself is the step's start time (runner.engine.scheduler.start_time)."""
    return step_result("succeeded")


EXECUTORS: dict[str, Callable[[RunContext, Step], StepResult]] = {
    "check_credits": check_credits,
    "check_report": check_report,
    "send": send,
    "wait": wait,
}
