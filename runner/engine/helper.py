"""Helping another process send a step: claim its queued messages and call them.

A daemon on a shared journal helps the send steps other processes drive (the run's
own process keeps the step: its plan, its rounds, its verdict). The helper claims
batches of queued messages like the driver does, through the same provider
settings read from its own copy of the campaign file, within its part of the
provider's concurrency and the rate they share. It stops when nothing is left to
claim, when the driver is gone, or when the run is paused, cancelled or ends;
what it had claimed and not called goes back to ``queued`` for the others.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from runner.engine.calls import call_for
from runner.engine.dispatch import Dispatcher
from runner.engine.holds import helper_guard
from runner.engine.ratelimit import RateLimiter
from runner.engine.rounds import default_sender
from runner.engine.scheduler import in_window
from runner.engine.sharing import Share, SharedRate, rate_key
from runner.engine.tally import Tally
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.workers import Joinable
from runner.model.campaign import Campaign, SendAction
from runner.providers.base import Provider

WATCH = 0.5  # seconds between looks at the run's state


@dataclass(frozen=True)
class Helped:
    sent: int
    why: str  # why the helper stopped, in words


def help_send(
    journal: Journal,
    log: EventLog,
    campaign: Campaign,
    job: Joinable,
    provider: Provider,
    stop: threading.Event,
) -> Helped:
    step = next((s for s in campaign.steps if s.id == job.step_id), None)
    if step is None or not isinstance(step.action, SendAction):
        return Helped(0, f"this copy of {campaign.name} has no send step {job.step_id}")
    action = step.action
    if action.pin is not None:  # its key and export file are the driver's
        return Helped(0, f"step {job.step_id} sends PINs: only its own run sends them")
    window = step.timing.window
    share = Share(
        journal,
        run_id=job.run_id,
        step_id=job.step_id,
        provider=job.provider,
        campaign=job.campaign,
        concurrency=provider.concurrency,
        role="helper",
    )
    closed = threading.Event()

    def watch() -> None:
        while not stop.wait(WATCH) and not closed.is_set():
            try:
                if not journal.step_open(job.run_id, job.step_id):
                    closed.set()
            except Exception:  # the journal away: stop helping, calls recorded
                closed.set()

    watcher = threading.Thread(target=watch, name="help-watch", daemon=True)
    watcher.start()

    def keep_going() -> bool:
        if closed.is_set() or not share.driver_alive:
            return False
        return window is None or in_window(window, datetime.now(UTC), campaign.timezone)

    rate = provider.config.rate or type(provider).default_rate
    guard = helper_guard(journal, campaign, job.run_id, job.step_id)
    tally = Tally()
    log.emit("step.helping", job.run_id, job.step_id, provider=job.provider)
    try:
        result = Dispatcher(
            journal=journal,
            log=log,
            run_id=job.run_id,
            step_id=job.step_id,
            provider_name=job.provider,
            provider=provider,
            limiter=SharedRate(journal, rate_key(job.run_id, job.provider), rate)
            if rate is not None
            else RateLimiter(None),
            policy=provider.config.retry,
            sender=action.sender or default_sender(provider),
            stop=stop,
            claimer=share.claimer,
            keep_going=keep_going,
            tally=tally,
            gate=share.gate,
            probe=False,
            call=call_for(provider, action),
            guard=guard,
        ).run()
    finally:
        closed.set()
        share.close()
        watcher.join(timeout=2)
    why = (
        "stopped"
        if stop.is_set()
        else f"{job.provider} is down"
        if result.provider_down
        else "nothing left to claim"
        if keep_going()
        else "the run no longer sends this step"
    )
    log.emit(
        "step.helped",
        job.run_id,
        job.step_id,
        provider=job.provider,
        sent=tally.sent,
        why=why,
    )
    return Helped(tally.sent, why)
