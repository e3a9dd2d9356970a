"""A test send: one recipient's message, as the campaign would render it, sent to
the numbers a person gives instead of to the recipient.

It is recorded as a run of its own, in mode ``test``: the same exactly-once
dispatch as a real send (intent before call, outcome after), but never counted
in the campaign's figures, never continued by ``run``, never holding the
campaign's lease, so a test never blocks or shortens the real send.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.engine.calls import call_for
from runner.engine.context import EXIT_FAILED, EXIT_OK, EXIT_UNSETTLED
from runner.engine.dispatch import Dispatcher
from runner.engine.pins import PinKeeper, pin_key
from runner.engine.plan import Rendering, renderings
from runner.engine.ratelimit import RateLimiter
from runner.engine.rounds import refusal
from runner.errors import StepFailed, UsageError
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.writer import Planned
from runner.model.campaign import Campaign, SendAction, Step
from runner.providers.base import Provider


@dataclass(frozen=True)
class TestResult:
    run_id: str
    exit_code: int
    step_id: str
    rendering: Rendering  # whose message was sent, and its text
    counts: Mapping[str, int]
    message: str


def send_step(campaign: Campaign, step_id: str | None) -> Step:
    """The send step asked for, or the campaign's first."""
    sends = [s for s in campaign.steps if isinstance(s.action, SendAction)]
    if not sends:
        raise UsageError(f"{campaign.name} has no send step to test")
    if step_id is None:
        return sends[0]
    for s in sends:
        if s.id == step_id:
            return s
    ids = ", ".join(s.id for s in sends)
    raise UsageError(f"no send step {step_id!r} in {campaign.name} (send steps: {ids})")


def pick(campaign: Campaign, template: str, position: int) -> Rendering:
    """The ``position``-th recipient (1 = the first) and their message."""
    if position < 1:
        raise UsageError(f"--recipient {position}: counts from 1 (the first recipient)")
    count = 0
    for count, rendering in enumerate(renderings(campaign, template), start=1):
        if count < position:
            continue
        if rendering.error is not None:
            where = f"row {rendering.row}" if rendering.row else f"recipient {count}"
            raise UsageError(
                f"{where}: the message cannot be rendered: {rendering.error}"
            )
        return rendering
    if count == 0:
        raise UsageError(f"{campaign.name} has no recipient to render the message for")
    raise UsageError(f"--recipient {position}: the campaign has {count} recipients")


def send_test(
    campaign: Campaign,
    step: Step,
    rendering: Rendering,
    to: Sequence[str],
    *,
    journal: Journal,
    log: EventLog,
    providers: Mapping[str, Provider],
    sandbox: str | None = None,
    stop: threading.Event | None = None,
) -> TestResult:
    """Send ``rendering``'s text to ``to`` through the step's first provider."""
    action = step.action
    assert isinstance(action, SendAction)
    name = action.providers[0]
    provider = providers[name]
    run_id = journal.start_run(
        campaign.name,
        str(campaign.path),
        {"test": True, "step": step.id, "recipient_row": rendering.row},
        sandbox=sandbox,
        mode="test",
    )
    log.emit(
        "run.started",
        run_id,
        campaign=campaign.name,
        path=str(campaign.path),
        mode="test",
        step=step.id,
        to=[log.phone(p) for p in to],
    )
    position = campaign.steps.index(step)
    journal.start_step(run_id, step.id, step.kind, position)
    assert rendering.text is not None
    journal.writer.plan(
        [
            Planned(
                run_id=run_id,
                step_id=step.id,
                phone=phone,
                seq=i,
                provider=name,
                text=rendering.text,
                segments=rendering.segments,
                source_row=rendering.row,
                variant=rendering.variant,
            )
            for i, phone in enumerate(to, start=1)
        ]
    )
    sender = action.sender or provider.options.get("sender")
    pins = None
    if action.pin is not None:  # the tester's PIN: hashed, for pin verify
        try:
            pins = PinKeeper(pin_key(action.pin, os.environ, sandbox=bool(sandbox)))
        except StepFailed as e:
            raise UsageError(str(e)) from None
    claimer = journal.worker.claimer()
    result = Dispatcher(
        journal=journal,
        log=log,
        run_id=run_id,
        step_id=step.id,
        provider_name=name,
        provider=provider,
        limiter=RateLimiter(provider.config.rate or type(provider).default_rate),
        policy=provider.config.retry,
        sender=None if sender is None else str(sender),
        stop=stop or threading.Event(),
        claimer=claimer,
        call=call_for(provider, action),
        pins=pins,
        one_by_one=pins is not None,
    ).run()
    journal.worker.done(claimer)
    counts = journal.message_counts(run_id, step.id)
    if counts.get("sent", 0) == len(to):
        code, status, message = EXIT_OK, "succeeded", f"sent to {len(to)}"
    elif counts.get("unknown"):
        code, status = EXIT_UNSETTLED, "unsettled"
        message = f"{counts['unknown']} outcomes unknown (the number may get it)"
    else:
        code, status = EXIT_FAILED, "failed"
        why = refusal(name, result.provider_down) if result.provider_down else ""
        message = f"{len(to) - counts.get('sent', 0)} not sent" + (
            f": {why}" if why else ""
        )
    detail: dict[str, object] = {"counts": counts, "message": message}
    if action.pin is not None:
        detail["pin_key"] = action.pin.key_var
    journal.finish_step(run_id, step.id, status, detail, step.kind)
    journal.finish_run(run_id, status, code)
    log.emit("run.finished", run_id, status=status, exit_code=code)
    return TestResult(run_id, code, step.id, rendering, counts, message)
