"""Planning a send: every rendered message recorded ``queued`` before any call.

A recipient whose template failed is recorded ``failed`` (``template``, its
cause in ``error_code``) and never sent. Planning is idempotent, so a resumed
step plans only what is missing; after the campaign file changed, ``rerender``
also renders again what was never called, and cancels the queued messages of
recipients who are no longer in the list.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

from runner.audience.failures import Failures, Unrendered
from runner.audience.recipient import Recipient, RecipientStats, Skipped
from runner.audience.recipients import iter_recipients
from runner.audience.templates import Renderer
from runner.audience.zones import ZoneFinder
from runner.engine.ahead import Ahead
from runner.errors import TemplateError
from runner.journal.journal import Journal
from runner.journal.suppressions import BatchHold
from runner.journal.writer import JournalWriter, LeftOut, Planned
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
    variant: str | None = None  # the template's variant, when it has variants


@dataclass(frozen=True)
class PlanResult:
    complete: bool = True  # False: stopped before the last recipient (``Ahead``)
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
) -> Generator[Rendering, None, None]:
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
        return Rendering(r.phone, r.row, None, 0, e, zone, renderer.variant(template, r))
    return Rendering(
        r.phone, r.row, out.text, out.segmentation.segments, None, zone, out.variant
    )


def follow_renderings(
    campaign: Campaign,
    template: str,
    journal: Journal,
    run_id: str,
    follow: FollowUp,
    stats: RecipientStats,
    zones: ZoneFinder | None = None,
) -> Generator[Rendering, None, None]:
    """The recipients of an earlier send step whose message matches ``follow``,
    each with its message of ``template`` (``previous`` holds that message)."""
    renderer = Renderer(campaign)
    earlier = journal.messages_for(run_id, follow.step)
    chosen: dict[str, dict[str, Any]] = {}
    skip = stats.on_skip
    for row in earlier:
        before: dict[str, Any] = {k: row.get(k) for k in PREVIOUS_FIELDS}
        if (follow.statuses and row["status"] not in follow.statuses) or (
            follow.where
            and not renderer.evaluate(follow.where, {**before, "vars": campaign.vars})
        ):
            if skip is not None:
                skip(_not_chosen(follow, row))
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


def _not_chosen(follow: FollowUp, row: dict[str, Any]) -> Skipped:
    """An earlier step's message that the follow-up's condition does not pick."""
    rules = []
    if follow.statuses:
        rules.append(f"status in ({', '.join(follow.statuses)})")
    if follow.where:
        rules.append(f"where: {follow.where}")
    rule = " and ".join(rules)
    detail = f"its message in step {follow.step} is {row['status']}, not {rule}"
    phone = str(row["phone"])
    source = f"step {follow.step}"
    return Skipped(
        "filtered_out", source, row["source_row"] or 0, 0, phone, phone, detail
    )


class LeftOutRows:
    """The rows a step's plan leaves out, written with its batches of messages
    (or on their own, a batch at a time, when few are planned meanwhile)."""

    def __init__(self, journal: Journal, run_id: str, step_id: str) -> None:
        self.writer = journal.writer
        self.run_id, self.step_id = run_id, step_id
        self.rows: list[LeftOut] = []

    def __call__(self, row: Skipped) -> None:
        self.rows.append(LeftOut(self.run_id, self.step_id, row))
        if len(self.rows) >= PLAN_BATCH:
            self.writer.plan([], wait=False, left_out=self.take())

    def take(self) -> list[LeftOut]:
        rows, self.rows = self.rows, []
        return rows


def plan(
    journal: Journal,
    run_id: str,
    step_id: str,
    provider: str,
    messages: Iterable[Rendering],
    *,
    rerender: bool = False,
    left_out: LeftOutRows | None = None,
    ahead: Ahead | None = None,
) -> PlanResult:
    """Record the messages not yet in the journal (with ``rerender``, replace the
    text of those never called too), and with ``left_out`` the rows it told of
    meanwhile, in the same transactions; returns what changed.

    With ``ahead``, the step sends while this plans: each batch is held as it is
    inserted, ``ahead`` is told of the batches committed, and a stop it is asked
    for ends the plan early (``complete`` False)."""
    seq = journal.max_seq(run_id, step_id)
    known = journal.message_states(run_id, step_id) if rerender else {}
    if seq and not rerender:  # planned in part before (stopped): the rest
        messages = _unplanned(journal, run_id, step_id, messages)
    writer = journal.writer
    take = left_out.take if left_out is not None else list
    new: list[Planned] = []
    again: list[Planned] = []
    seen: set[str] = set()
    added = rerendered = 0
    unrendered = Failures()
    for m in messages:
        if ahead is not None and ahead.stopping.is_set():
            writer.flush()
            return PlanResult(False, added, 0, 0, unrendered)
        state = known.get(m.phone)
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
            if rerender:  # (the recipients are unique: only ``gone`` needs them)
                known[m.phone] = "queued"
        else:
            again.append(_planned(run_id, step_id, provider, m, 0))
        if len(new) >= PLAN_BATCH:
            # inserted by the writer thread while the next batch renders
            added = _hand_over(writer, new, added, unrendered, take(), ahead)
            new = []
            if ahead is not None:
                ahead.planned(writer.flush)
        if len(again) >= PLAN_BATCH:
            writer.plan(again, wait=False, rerender=True, left_out=take())
            rerendered += len(again)
            again = []
    if new:
        added = _hand_over(writer, new, added, unrendered, take(), ahead)
    if again:
        writer.plan(again, wait=False, rerender=True, left_out=take())
        rerendered += len(again)
    rest = take()
    if rest:
        writer.plan([], wait=False, left_out=rest)
    writer.flush()  # every row committed (or the error raised) before a call
    dropped = 0
    if rerender:
        gone = [p for p, s in known.items() if s in NEVER_CALLED and p not in seen]
        dropped = journal.cancel(
            run_id, step_id, gone, "no longer in the recipients when the run resumed"
        )
    return PlanResult(True, added, rerendered, dropped, unrendered)


def _unplanned(
    journal: Journal, run_id: str, step_id: str, messages: Iterable[Rendering]
) -> Iterator[Rendering]:
    """The messages whose recipient has no row in the step yet, looked up a
    batch at a time: memory does not grow with what was planned before."""
    it = iter(messages)
    while chunk := list(islice(it, PLAN_BATCH)):
        there = journal.planned_phones(run_id, step_id, [m.phone for m in chunk])
        yield from (m for m in chunk if m.phone not in there)


def _hand_over(
    writer: JournalWriter,
    batch: list[Planned],
    added: int,
    unrendered: Failures,
    left_out: Sequence[LeftOut],
    ahead: Ahead | None,
) -> int:
    """Give a batch to the writer; with ``ahead``, count it in the same breath,
    so that what is counted and what the writer holds agree (``Ahead.lock``)."""
    if ahead is None:
        writer.plan(batch, wait=False, left_out=left_out)
        return added + len(batch)
    with ahead.lock:
        writer.plan(batch, wait=False, left_out=left_out, hold=_hold(ahead))
        ahead.count(added + len(batch), unrendered)
    return added + len(batch)


def _hold(ahead: Ahead | None) -> BatchHold | None:
    """The hold of a batch planned once the step may be sending: the sample is
    held with the step's other rows (``hold_back``) before its first call."""
    return ahead.hold if ahead is not None and ahead.sampled.is_set() else None


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
        variant=m.variant,
    )
