"""The wait step: nothing to do once it starts."""

from __future__ import annotations

from runner.engine.context import RunContext, StepResult
from runner.engine.reads import step_result
from runner.model.campaign import Step


def wait(ctx: RunContext, step: Step) -> StepResult:
    """The delay itself is the step's start time (``engine.scheduler.start_time``)."""
    return step_result("succeeded")
