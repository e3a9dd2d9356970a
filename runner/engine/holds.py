"""What the journal says a send step may not send now, whichever campaign asks:
numbers on the suppression list, and numbers over their frequency cap.

Applied to a step's queued rows each time it is about to dispatch (a resumed or
deferred step too), and learnt from what providers tell: a STOP reply in a
report, a refusal that says the person opted out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from runner.engine.context import RunContext
from runner.engine.scheduler import in_window, next_window_open
from runner.journal.journal import Journal
from runner.journal.store import now_iso
from runner.journal.suppressions import Suppression
from runner.model.campaign import Campaign, FrequencyCap, Step
from runner.model.timeparse import parse_cap


@dataclass(frozen=True)
class Held:
    suppressed: int = 0
    capped: int = 0  # or deferred, when the cap defers
    released: int = 0  # back to queued: off the list, or the cap allows now
    waiting: int = 0  # in zones where the step's window is closed now
    open_zones: frozenset[str] = frozenset()  # where it is open (recipient windows)


def run_mode(ctx: RunContext) -> str:
    run = ctx.journal.get_run(ctx.run_id) or {}
    return str(run.get("mode") or "real")


def cap_of(ctx: RunContext) -> FrequencyCap | None:
    """The campaign's own cap, else the one its daemon gives every campaign."""
    return cap_for(ctx.campaign, ctx.options.per_recipient, ctx.options.on_cap)


def cap_for(
    campaign: Campaign, per_recipient: str | None, on_cap: str = "skip"
) -> FrequencyCap | None:
    """The campaign's own cap, else the default its run was given (as written)."""
    if campaign.per_recipient is not None:
        return campaign.per_recipient
    if not per_recipient:
        return None
    count, window = parse_cap(per_recipient)
    return FrequencyCap(count, window, defer=on_cap == "defer")


@dataclass(frozen=True)
class ClaimGuard:
    """The frequency cap again, on each claimed batch right before its calls:
    what two campaigns planned at the same moment both passed (see
    ``Journal.over_cap``). The numbers it holds are ``capped`` or ``deferred``."""

    journal: Journal
    run_id: str
    step_id: str
    mode: str
    cap: FrequencyCap
    clock: Callable[[], datetime]

    @property
    def status(self) -> str:
        return "deferred" if self.cap.defer else "capped"

    @property
    def why(self) -> str:
        return f"over the frequency cap {self.cap} (another message went first)"

    def __call__(self, phones: Sequence[str]) -> set[str]:
        return self.journal.over_cap(
            self.run_id, self.step_id, self.mode, self.cap, phones, self.clock()
        )


def claim_guard(ctx: RunContext, step: Step) -> ClaimGuard | None:
    cap = cap_of(ctx)
    if cap is None:
        return None
    return ClaimGuard(ctx.journal, ctx.run_id, step.id, run_mode(ctx), cap, ctx.clock)


def helper_guard(
    journal: Journal, campaign: Campaign, run_id: str, step_id: str
) -> ClaimGuard | None:
    """The claim guard of a run another process drives: its cap from the run's
    stored options (a daemon's default cap included)."""
    run: Mapping[str, object] = journal.get_run(run_id) or {}
    try:
        options = json.loads(str(run.get("options") or "{}"))
    except ValueError:
        options = {}
    cap = cap_for(campaign, options.get("per_recipient"), options.get("on_cap", "skip"))
    if cap is None:
        return None
    mode = str(run.get("mode") or "real")
    return ClaimGuard(journal, run_id, step_id, mode, cap, lambda: datetime.now(UTC))


def hold_back(ctx: RunContext, step: Step) -> Held:
    """Mark the step's queued messages the journal forbids now; say so."""
    journal, run_id = ctx.journal, ctx.run_id
    mode = run_mode(ctx)
    waiting = woken = 0
    opened: frozenset[str] = frozenset()
    window = step.timing.window
    if window is not None and window.per_recipient and not ctx.options.ignore_windows:
        now = ctx.clock()
        zones = journal.step_zones(run_id, step.id)
        opened = frozenset(z for z in zones if in_window(window, now, ZoneInfo(z)))
        why = "outside the sending window in the recipient's time zone"
        waiting, woken = journal.apply_zones(run_id, step.id, opened, why)
    transactional = ctx.campaign.kind == "transactional"
    suppressed, freed = journal.apply_suppressions(run_id, step.id, mode, transactional)
    capped = released = 0
    cap = cap_of(ctx)
    if cap is not None:
        capped, released = journal.apply_caps(run_id, step.id, mode, cap, ctx.clock())
    held = Held(suppressed, capped, freed + released + woken, waiting, opened)
    if suppressed or capped or held.released or waiting:
        ctx.log.emit(
            "step.held",
            run_id,
            step.id,
            suppressed=suppressed,
            capped=capped if cap is None or not cap.defer else 0,
            deferred=capped if cap is not None and cap.defer else 0,
            released=held.released,
            waiting=waiting,
            open_zones=sorted(opened),
            cap=str(cap) if cap is not None else None,
        )
    return held


def next_zone_opening(ctx: RunContext, step: Step) -> datetime | None:
    """The next time the step's window opens in a zone that has messages waiting."""
    window = step.timing.window
    if window is None or not window.per_recipient:
        return None
    now = ctx.clock()
    waiting = ctx.journal.step_zones(ctx.run_id, step.id)
    closed = [z for z in waiting if not in_window(window, now, ZoneInfo(z))]
    if not closed:
        return None
    return min(next_window_open(window, now, ZoneInfo(z)) for z in closed)


def next_release(ctx: RunContext, step: Step) -> datetime | None:
    """When a deferred message of the step may go (None: none is deferred)."""
    cap = cap_of(ctx)
    if cap is None or not cap.defer:
        return None
    return ctx.journal.next_cap_release(
        ctx.run_id, step.id, run_mode(ctx), cap, ctx.clock()
    )


def learn_refusals(ctx: RunContext, step: Step, providers: Iterable[str]) -> int:
    """Numbers a provider refused as opted out join the suppression list."""
    added = 0
    mode = run_mode(ctx)
    for name in providers:
        codes = sorted(ctx.providers[name].optout_codes)
        source = f"refused by {name} as opted out (run {ctx.run_id}, step {step.id})"
        added += ctx.journal.suppress_refused(ctx.run_id, step.id, codes, mode, source)
    if added:
        ctx.log.emit("suppression.added", ctx.run_id, step.id, count=added, why="optout")
    return added


def learn_stops(ctx: RunContext, step: Step, provider: str, phones: Iterable[str]) -> int:
    """Numbers that replied STOP join the suppression list (scope marketing)."""
    mode = "sandbox" if run_mode(ctx) == "sandbox" else "real"
    source = f"STOP reply via {provider} (run {ctx.run_id}, step {step.id})"
    at = now_iso()
    added = ctx.journal.suppress(
        Suppression(p, mode, "marketing", "stop", source, at) for p in phones
    )
    if added:
        ctx.log.emit("suppression.added", ctx.run_id, step.id, count=added, why="stop")
    return added
