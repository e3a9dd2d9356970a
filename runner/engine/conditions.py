"""``when:`` conditions: a Jinja expression over the outcomes of earlier steps."""

from __future__ import annotations

from typing import Any

from runner.audience.templates import Renderer
from runner.engine.context import RunContext


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
    renderer = Renderer(ctx.campaign)
    value = renderer.evaluate(
        expression, {"steps": step_outcomes(ctx), "vars": ctx.campaign.vars}
    )
    return bool(value)
