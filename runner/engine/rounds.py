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

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.engine.calls import call_for
from runner.engine.context import RunContext
from runner.engine.dispatch import Dispatcher
from runner.engine.holds import claim_guard
from runner.engine.pins import PinKeeper
from runner.engine.reconcile import Settlement, reconcile_unknown
from runner.engine.sharing import Share
from runner.engine.tally import Tally
from runner.model.campaign import SendAction, Step
from runner.providers.base import CallError, ErrorKind

# Each round after the first resends only what a report proved never sent; with
# a provider that loses one answer in ten, five rounds leave about one message
# in 100,000 unknown.
MAX_ROUNDS = 5
HELPERS_POLL = 0.3  # seconds between looks at what helping daemons still call


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
    pins: PinKeeper | None = None,
    planned: threading.Event | None = None,
) -> RoundsResult:
    """``pins``: a PIN step's keeper of the PINs that come back; ``planned``:
    set once a plan that goes on while the step sends is over (``Ahead``)."""
    action = step.action
    assert isinstance(action, SendAction)
    names = providers_of(ctx, action)
    result = RoundsResult()
    for n in range(1, MAX_ROUNDS + 1):
        result.rounds = n
        _dispatch(ctx, step, action, names, tally, keep_going, result.down, pins, planned)
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
    pins: PinKeeper | None,
    planned: threading.Event | None,
) -> None:
    guard = claim_guard(ctx, step)
    for name in names:
        if name in down:
            continue
        provider = ctx.providers[name]
        # on a shared journal, daemons may join this provider's sending (not a
        # PIN step's: its key and export file are this process's)
        share = (
            Share(
                ctx.journal,
                run_id=ctx.run_id,
                step_id=step.id,
                provider=name,
                campaign=ctx.campaign.name,
                concurrency=provider.concurrency,
                role="driver",
            )
            if ctx.journal.shared and action.pin is None
            else None
        )
        claimer = share.claimer if share else ctx.journal.worker.claimer()
        try:
            while True:
                outcome = Dispatcher(
                    journal=ctx.journal,
                    log=ctx.log,
                    run_id=ctx.run_id,
                    step_id=step.id,
                    provider_name=name,
                    provider=provider,
                    limiter=ctx.limiters[name],
                    policy=provider.config.retry,
                    sender=action.sender or default_sender(provider),
                    stop=ctx.stop,
                    keep_going=keep_going,
                    tally=tally,
                    claimer=claimer,
                    gate=share.gate if share else None,
                    call=call_for(provider, action),
                    pins=pins,
                    one_by_one=action.pin is not None,
                    guard=guard,
                    planned=planned,
                ).run()
                if share is None or outcome.provider_down or outcome.stopped:
                    break
                if not _await_helpers(ctx, step, tally, claimer, keep_going):
                    break  # nothing queued again: the step's sending is over
        finally:
            if share is not None:
                share.close()
            else:
                ctx.journal.worker.done(claimer)
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


def _await_helpers(
    ctx: RunContext,
    step: Step,
    tally: Tally,
    claimer: str,
    keep_going: Callable[[], bool],
) -> bool:
    """Wait for the calls other processes have under way for this step; True
    when some messages are queued again (a helper stopped before calling them).

    A helper that died leaves its claims pending: they become unknown, to be
    settled from the provider's report like any other unknown outcome.
    """
    journal = ctx.journal
    while not ctx.stop.is_set() and keep_going():
        lost = journal.settle_interrupted(ctx.run_id, step.id)
        if lost:
            tally.add(unknown=lost)
            ctx.log.emit(
                "step.unknown_after_crash",
                ctx.run_id,
                step.id,
                count=lost,
                reason="a process helping to send it stopped before recording",
            )
        if journal.queued_left(ctx.run_id, step.id):
            return True
        if not journal.pending_by_others(ctx.run_id, step.id, claimer):
            return False
        ctx.stop.wait(HELPERS_POLL)
    return False


def refusal(name: str, err: CallError) -> str:
    """Why a provider took no more messages, in words, with its own reason."""
    why = " ".join(p for p in (err.code, err.detail) if p)
    if err.kind == ErrorKind.AUTH:
        return f"{name} refused the credentials: {why}"
    return f"{name} is down ({err.kind.value}): {why}"


def default_sender(provider: Any) -> str | None:
    value = provider.options.get("sender")
    return None if value is None else str(value)
