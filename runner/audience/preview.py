"""``preview``: every message rendered and counted, nothing sent.

The same pass (read -> normalise -> dedup -> render -> segments) gives the
engine its ``segments('step')`` figures for ``check_credits``, so what preview
shows is what a run would plan. Rows are checked and rendered by chunk (in
worker processes for a large file, see runner.audience.render); what depends on order
(duplicates, totals, output) is merged here, in file order. The numbers seen
are kept in a :class:`NumberSet`, a chunk's looked up at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from runner.audience import render as batch
from runner.audience.encoding import GSM7, UCS2
from runner.audience.failures import Failures
from runner.audience.numberset import Closes, NumberSet
from runner.audience.recipient import RecipientStats
from runner.audience.render import BY_DATA, BY_TEXT, FAILED, GSM, UNICODE, Message, Pack
from runner.errors import RecipientError, UsageError
from runner.model.campaign import Campaign, SendAction


@dataclass(frozen=True)
class SendTotals:
    """What one template comes to over the campaign's recipients."""

    messages: int  # rendered within max_segments
    segments: int
    by_encoding: Mapping[str, int]  # messages per encoding
    failures: int  # recipients whose text could not be rendered


@dataclass
class Tally:
    step: str
    template: str
    messages: int = 0
    segments: int = 0
    by_encoding: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    failures: Failures = field(default_factory=Failures)  # grouped by cause
    by_text: int = 0  # UCS-2 messages due to non-GSM characters in the text
    by_data: int = 0  # ... only in the recipient's data
    culprits: Counter[str] = field(default_factory=Counter)
    shown: list[tuple[str, Message]] = field(default_factory=list)

    def add(self, out: batch.Output, dropped: list[int], limit: int) -> None:
        """A chunk's messages, less the rows that turned out to be duplicates."""
        kinds, forced = out.kinds, out.forced
        failed = kinds.count(FAILED)
        unicode = kinds.count(UNICODE)
        gsm = len(kinds) - failed - unicode
        segments = sum(out.segments)
        by_text, by_data = forced.count(BY_TEXT), forced.count(BY_DATA)
        for n in dropped:
            kind, why = kinds[n : n + 1], forced[n : n + 1]
            failed -= kind == FAILED
            unicode -= kind == UNICODE
            gsm -= kind == GSM
            segments -= out.segments[n]
            by_text -= why == BY_TEXT
            by_data -= why == BY_DATA
        self.messages += gsm + unicode
        self.segments += segments
        self.by_encoding[GSM7] += gsm
        self.by_encoding[UCS2] += unicode
        self.failed += failed
        self.by_text += by_text
        self.by_data += by_data
        self.culprits.update(out.culprits)
        skip = set(dropped)
        for n, failure in out.errors.items():
            if n not in skip:
                self.failures.add(failure)
        for n, shown in enumerate(out.shown):
            if len(self.shown) >= limit:
                break
            if n not in skip:
                self.shown.append(shown)

    def totals(self) -> SendTotals:
        by_encoding = {k: v for k, v in self.by_encoding.items() if v}
        return SendTotals(self.messages, self.segments, by_encoding, self.failed)


class Merge(Closes):
    """Packs in file order: duplicates dropped (the first row wins), all counted,
    every kept message tallied and written. Closing it forgets the numbers seen."""

    def __init__(
        self,
        steps: list[tuple[str, str]],
        limit: int,
        fmt: str,
        sink: TextIO | None,
        suppressed: frozenset[int] = frozenset(),
    ) -> None:
        self.suppressed = suppressed  # numbers on the journal's list, as keys
        self.on_list = 0  # accepted recipients among them: planned, never sent
        self.stats = RecipientStats()
        self.tallies = [Tally(s, t) for s, t in steps]
        self.limit, self.fmt, self.sink = limit, fmt, sink
        self.seen = NumberSet()
        self.written = 0

    def wants_details(self) -> bool:
        return any(len(t.shown) < self.limit for t in self.tallies)

    def add(self, pack: Pack) -> None:
        stats, where = self.stats, pack.where
        stats.read += pack.read
        stats.excluded += pack.excluded
        for bad in pack.invalid:
            stats.add_invalid(bad)
        dropped: list[int] = []  # duplicates among the rows that have messages
        row = 0  # index of the next row that has messages
        new = self.seen.add_new(pack.keys)
        for i, key in enumerate(pack.keys):
            passed = where.get(i, True) if where else True
            if not new[i]:
                stats.duplicates += 1
                if passed is True:
                    dropped.append(row)
                    row += 1
                continue
            if passed is True:
                stats.accepted += 1
                row += 1
                if key in self.suppressed:
                    self.on_list += 1
            elif passed is False:
                stats.filtered_out += 1
            else:
                raise RecipientError(str(passed))
        for tally, out in zip(self.tallies, pack.outputs, strict=True):
            tally.add(out, dropped, self.limit)
        if self.sink is not None:
            self._write(pack, dropped)

    def _write(self, pack: Pack, dropped: list[int]) -> None:
        text, ends = pack.text, pack.ends
        parts = [text]
        if dropped:
            parts, start = [], 0
            for n in dropped:
                parts.append(text[start : ends[n - 1] if n else 0])
                start = ends[n]
            parts.append(text[start:])
        for part in parts:
            if not part:
                continue
            if self.fmt == "json" and not self.written:
                part = "[\n" + part[2:]  # the first object: no ",\n" before it
            self.sink.write(part)  # type: ignore[union-attr]
            self.written += 1

    def finish(self) -> None:
        """End the output (JSON's closing bracket) once every pack is in."""
        if self.sink is None:
            return
        if self.fmt == "json":
            self.sink.write("\n]\n" if self.written else "[]\n")
        self.sink.flush()

    def close(self) -> None:
        self.seen.close()


def send_steps(campaign: Campaign, step_id: str | None = None) -> list[tuple[str, str]]:
    """(step id, template) of every send step, or of the one asked for."""
    steps = [
        (s.id, s.action.template)
        for s in campaign.steps
        if isinstance(s.action, SendAction)
    ]
    if step_id is None:
        return steps
    chosen = [s for s in steps if s[0] == step_id]
    if not chosen:
        ids = ", ".join(s for s, _ in steps) or "none"
        raise UsageError(
            f"no send step {step_id!r} in {campaign.name} (send steps: {ids})"
        )
    return chosen


def send_totals(campaign: Campaign, template: str) -> SendTotals:
    """Messages and segments one template would send (``segments('step')``)."""
    steps = [("", template)]
    job = batch.Job(campaign, steps)
    with job, Merge(steps, 0, "text", None) as merge:
        for pack in batch.packs(job, merge.wants_details):
            merge.add(pack)
    return merge.tallies[0].totals()


def render_all(
    campaign: Campaign,
    steps: list[tuple[str, str]],
    *,
    limit: int,
    fmt: str = "text",
    sink: TextIO | None = None,
    show_phones: bool = False,
    workers: int | None = None,
    suppressed: frozenset[int] = frozenset(),
) -> Merge:
    """Render every recipient's message of ``steps``; keep ``limit`` whole per step.

    With ``fmt`` ``json`` or ``csv`` every message is also written to ``sink``.
    ``workers``: processes for large files (None: one per core).
    """
    if sink is not None and fmt == "csv":
        sink.write(batch.CSV_HEADER)
    job = batch.Job(campaign, steps, fmt, show_phones)
    with job, Merge(steps, limit, fmt, sink, suppressed) as merge:
        for pack in batch.packs(job, merge.wants_details, workers):
            merge.add(pack)
        merge.finish()
    return merge
