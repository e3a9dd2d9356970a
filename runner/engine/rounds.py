"""A send step's rounds: send what is queued, then settle what came back unknown.

A round dispatches the step's queued messages through its providers in order
(the next one takes over when one is down). When some outcomes are unknown and
their provider has a per-recipient report, the step waits for that report's
lag, reads it, and queues again what it proves was never sent; the next round
sends those. It stops when nothing is unknown, nothing more can be learnt, or
``MAX_ROUNDS`` rounds have gone; a round always ends with a dispatch, so a step
never ends with messages left queued while its providers are up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.engine.context import RunContext
from runner.engine.dispatch import Dispatcher
from runner.engine.reconcile import Settlement, reconcile_unknown
from runner.engine.tally import Tally
from runner.model.campaign import SendAction, Step
from runner.providers.base import CallError, ErrorKind

# Each round after the first resends only what a report proved never sent; with
# a provider that loses one answer in ten, five rounds leave about one message
# in 100,000 unknown.
MAX_ROUNDS = 5


@dataclass
class RoundsResult:
    down: dict[str, CallError] = field(default_factory=dict)  # provider -> why
    settlement: Settlement = field(default_factory=Settlement)
    rounds: int = 0


def send_rounds(
    ctx: RunContext,
    step: Step,
    tally: Tally,
    keep_going: Callable[[], bool],
) -> RoundsResult:
    action = step.action
    assert isinstance(action, SendAction)
    names = providers_of(ctx, action)
    result = RoundsResult()
    for n in range(1, MAX_ROUNDS + 1):
        result.rounds = n
        _dispatch(ctx, step, action, names, tally, keep_going, result.down)
        if ctx.stop.is_set() or not keep_going():
            break
        if len(result.down) == len(names):
            break
        if n == MAX_ROUNDS or not ctx.journal.message_counts(ctx.run_id, step.id).get(
            "unknown"
        ):
            break
        settlement = _settle(ctx, step, tally)
        result.settlement = settlement
        if not settlement.requeued:
            break  # nothing to send again: what is left stays unknown
    return result


def _settle(ctx: RunContext, step: Step, tally: Tally) -> Settlement:
    """Reconcile, after waiting for the report to be able to list every unknown."""
    settlement = reconcile_unknown(ctx, step)
    if settlement.young and not ctx.stop.is_set():
        ctx.log.emit(
            "step.waiting",
            ctx.run_id,
            step.id,
            seconds=round(settlement.wait, 1),
            unknown=settlement.young,
            reason="the provider's report lists a send only after its report_lag",
        )
        if not ctx.stop.wait(settlement.wait):
            later = reconcile_unknown(ctx, step)
            later.sent += settlement.sent
            later.requeued += settlement.requeued
            settlement = later
    tally.settle(sent=settlement.sent, requeued=settlement.requeued)
    return settlement


def providers_of(ctx: RunContext, action: SendAction) -> tuple[str, ...]:
    """The step's providers in order, or the one a retry names instead."""
    via = ctx.options.provider
    return (via,) if via else action.providers


def _dispatch(
    ctx: RunContext,
    step: Step,
    action: SendAction,
    names: tuple[str, ...],
    tally: Tally,
    keep_going: Callable[[], bool],
    down: dict[str, CallError],
) -> None:
    for name in names:
        if name in down:
            continue
        provider = ctx.providers[name]
        dispatcher = Dispatcher(
            journal=ctx.journal,
            log=ctx.log,
            run_id=ctx.run_id,
            step_id=step.id,
            provider_name=name,
            provider=provider,
            limiter=ctx.limiters[name],
            policy=provider.config.retry,
            sender=action.sender or _default_sender(provider),
            stop=ctx.stop,
            keep_going=keep_going,
            tally=tally,
        )
        outcome = dispatcher.run()
        if outcome.provider_down is None:
            return
        down[name] = outcome.provider_down
        if name != names[-1]:
            ctx.log.emit(
                "step.failover",
                ctx.run_id,
                step.id,
                provider=name,
                reason=str(outcome.provider_down),
            )


def refusal(name: str, err: CallError) -> str:
    """Why a provider took no more messages, in words, with its own reason."""
    why = " ".join(p for p in (err.code, err.detail) if p)
    if err.kind == ErrorKind.AUTH:
        return f"{name} refused the credentials: {why}"
    return f"{name} is down ({err.kind.value}): {why}"


def _default_sender(provider: Any) -> str | None:
    value = provider.options.get("sender")
    return None if value is None else str(value)
