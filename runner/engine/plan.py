"""Planning a send: every rendered message recorded ``queued`` before any call.

A recipient whose template failed is recorded ``failed`` (``template``, its
cause in ``error_code``) and never sent. Planning is idempotent, so a resumed
step plans only what is missing; after the campaign file changed, ``rerender``
also renders again what was never called, and cancels the queued messages of
recipients who are no longer in the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from runner.audience.failures import Failures, Unrendered
from runner.audience.recipient import Recipient, RecipientStats
from runner.audience.recipients import iter_recipients
from runner.audience.templates import Renderer
from runner.audience.zones import ZoneFinder
from runner.errors import TemplateError
from runner.journal.journal import Journal
from runner.journal.writer import Planned
from runner.model.campaign import PREVIOUS_FIELDS, Campaign, FollowUp

PLAN_BATCH = 2000
NEVER_CALLED = frozenset({"queued"})


class Rendering(NamedTuple):
    """One recipient's message, or why it could not be rendered."""

    phone: str
    row: int | None
    text: str | None
    segments: int
    error: TemplateError | None = None
    zone: str | None = None  # the recipient's, when the step's window is theirs


@dataclass(frozen=True)
class PlanResult:
    added: int = 0
    rerendered: int = 0
    dropped: int = 0  # queued messages of recipients no longer in the list
    # the messages recorded failed because they cannot be rendered, by cause
    unrendered: Failures = field(default_factory=Failures)


def renderings(
    campaign: Campaign,
    template: str,
    stats: RecipientStats | None = None,
    zones: ZoneFinder | None = None,
) -> Iterator[Rendering]:
    """The campaign's recipients, each with its message of ``template`` (and
    with ``zones``, its time zone)."""
    renderer = Renderer(campaign)
    for r in iter_recipients(campaign, stats):
        yield _rendering(renderer, template, r, zones)


def _rendering(
    renderer: Renderer, template: str, r: Recipient, zones: ZoneFinder | None
) -> Rendering:
    zone = zones(r.phone, r.fields) if zones is not None else None
    try:
        out = renderer.render(template, r)
    except TemplateError as e:
        return Rendering(r.phone, r.row, None, 0, e, zone)
    return Rendering(r.phone, r.row, out.text, out.segmentation.segments, None, zone)


def follow_renderings(
    campaign: Campaign,
    template: str,
    journal: Journal,
    run_id: str,
    follow: FollowUp,
    stats: RecipientStats,
    zones: ZoneFinder | None = None,
) -> Iterator[Rendering]:
    """The recipients of an earlier send step whose message matches ``follow``,
    each with its message of ``template`` (``previous`` holds that message)."""
    renderer = Renderer(campaign)
    earlier = journal.messages_for(run_id, follow.step)
    chosen: dict[str, dict[str, Any]] = {}
    for row in earlier:
        before: dict[str, Any] = {k: row.get(k) for k in PREVIOUS_FIELDS}
        if follow.statuses and row["status"] not in follow.statuses:
            continue
        if follow.where:
            context = {**before, "vars": campaign.vars}
            if not renderer.evaluate(follow.where, context):
                continue
        chosen[str(row["phone"])] = before
    stats.read = len(earlier)
    stats.filtered_out = len(earlier) - len(chosen)
    for r in iter_recipients(campaign):
        if r.phone not in chosen:
            continue
        stats.accepted += 1
        fields = {**r.fields, "previous": chosen.pop(r.phone)}
        r = Recipient(r.phone, fields, r.row, r.source, r.line)
        yield _rendering(renderer, template, r, zones)
    stats.filtered_out += len(chosen)  # no longer among the campaign's recipients


def plan(
    journal: Journal,
    run_id: str,
    step_id: str,
    provider: str,
    messages: Iterable[Rendering],
    *,
    rerender: bool = False,
) -> PlanResult:
    """Record the messages not yet in the journal (with ``rerender``, replace the
    text of those never called too); returns what changed."""
    known = journal.message_states(run_id, step_id)
    seq = journal.max_seq(run_id, step_id)
    writer = journal.writer
    new: list[Planned] = []
    again: list[Planned] = []
    seen: set[str] = set()
    added = rerendered = 0
    unrendered = Failures()
    for m in messages:
        state = known.get(m.phone)
        if state is not None and not rerender:
            continue
        if rerender:
            if m.phone in seen:
                continue
            seen.add(m.phone)
            if state is not None and state not in NEVER_CALLED and state != "failed":
                continue
        if m.error is not None:
            unrendered.add(Unrendered.of(m.error))
        if state is None:
            seq += 1
            new.append(_planned(run_id, step_id, provider, m, seq))
            known[m.phone] = "queued"
        else:
            again.append(_planned(run_id, step_id, provider, m, 0))
        if len(new) >= PLAN_BATCH:
            # inserted by the writer thread while the next batch renders
            writer.plan(new, wait=False)
            added += len(new)
            new = []
        if len(again) >= PLAN_BATCH:
            writer.plan(again, wait=False, rerender=True)
            rerendered += len(again)
            again = []
    if new:
        writer.plan(new, wait=False)
        added += len(new)
    if again:
        writer.plan(again, wait=False, rerender=True)
        rerendered += len(again)
    writer.flush()  # every row committed (or the error raised) before a call
    dropped = 0
    if rerender:
        gone = [p for p, s in known.items() if s in NEVER_CALLED and p not in seen]
        dropped = journal.cancel(
            run_id, step_id, gone, "no longer in the recipients when the run resumed"
        )
    return PlanResult(added, rerendered, dropped, unrendered)


def _planned(run_id: str, step_id: str, provider: str, m: Rendering, seq: int) -> Planned:
    error = m.error
    return Planned(
        run_id,
        step_id,
        m.phone,
        seq,
        provider,
        m.text or "",
        m.segments,
        m.row,
        status="failed" if error else "queued",
        error_kind="template" if error else None,
        error_code=error.problem if error else None,
        error_detail=str(error) if error else None,
        zone=m.zone,
    )
