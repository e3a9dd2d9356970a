"""One module per kind of step, and the registry from a step's kind to it.

Each executor takes the run context and the step and returns a StepResult;
they talk to providers only through the capabilities in ``providers.base``.
``reads`` holds the retried provider reads they share, ``reconcile`` the
settling of unknown sends from a provider's report.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.engine.context import RunContext, StepResult
from runner.engine.steps.credits import check_credits
from runner.engine.steps.report import check_report
from runner.engine.steps.send import send
from runner.engine.steps.wait import wait
from runner.model.campaign import Step

EXECUTORS: dict[str, Callable[[RunContext, Step], StepResult]] = {
    "check_credits": check_credits,
    "check_report": check_report,
    "fire": send,  # the send step's journal and dispatch, with fireMessage calls
    "send": send,
    "wait": wait,
}
