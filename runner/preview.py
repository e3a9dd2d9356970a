"""``preview``: every message rendered and counted, nothing sent.

The same pass (read -> normalise -> dedup -> render -> segments) gives the
engine its ``segments('step')`` figures for ``check_credits``, so what preview
shows is what a run would plan. Large files are cut into chunks rendered by
worker processes (see runner.batch); the order-dependent part (duplicates,
counts, output) stays here, in file order.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from runner import batch
from runner.batch import Accepted, Message
from runner.campaign import SendAction
from runner.errors import RecipientError, UsageError
from runner.recipients import InvalidRow, RecipientStats
from runner.smsenc import GSM7, UCS2

if TYPE_CHECKING:
    from runner.campaign import Campaign

MAX_FAILURES_LISTED = 50
EXCERPT = 48
FEW_NON_GSM = 3  # UCS-2 because of this many distinct characters at most: warn


@dataclass(frozen=True)
class SendTotals:
    """What one template comes to over the campaign's recipients."""

    messages: int  # rendered within max_segments
    segments: int
    by_encoding: Mapping[str, int]  # messages per encoding
    failures: int  # recipients whose text could not be rendered


@dataclass
class _Tally:
    step: str
    template: str
    messages: int = 0
    segments: int = 0
    by_encoding: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    forced_ucs2: int = 0  # UCS-2 messages due to only a few non-GSM characters
    culprits: Counter[str] = field(default_factory=Counter)
    shown: list[tuple[str, Message]] = field(default_factory=list)

    def add(self, m: Message) -> None:
        encoding, _, segments, non_gsm, _, error, _ = m  # may be a plain tuple
        if error:
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append(error)
            return
        self.messages += 1
        self.segments += segments
        self.by_encoding[encoding] += 1
        if encoding == UCS2 and len(non_gsm) <= FEW_NON_GSM:
            self.forced_ucs2 += 1
            self.culprits.update(non_gsm)

    def totals(self) -> SendTotals:
        return SendTotals(
            self.messages, self.segments, dict(self.by_encoding), self.failed
        )


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


def accepted(events: Iterator[batch.Event], stats: RecipientStats) -> Iterator[Accepted]:
    """The rows that get messages, in file order: duplicates dropped, all counted."""
    seen: set[int] = set()
    for ev in events:
        stats.read += 1
        if ev is None:
            stats.excluded += 1
        elif isinstance(ev, InvalidRow):
            stats.add_invalid(ev)
        else:
            key, _, where, _ = ev  # may be a plain tuple
            if key in seen:
                stats.duplicates += 1
                continue
            seen.add(key)
            if where is True:
                stats.accepted += 1
                yield ev
            elif where is False:
                stats.filtered_out += 1
            else:
                raise RecipientError(str(where))


def send_totals(campaign: Campaign, template: str) -> SendTotals:
    """Messages and segments one template would send (``segments('step')``)."""
    tally = _Tally("", template)
    job = batch.Job(campaign, (template,))
    for _, _, _, (message,) in accepted(batch.events(job), RecipientStats()):
        tally.add(message)
    return tally.totals()


def preview(
    campaign: Campaign,
    *,
    limit: int,
    fmt: str,
    output: TextIO | None,
    show_phones: bool,
    out: TextIO,
    step: str | None = None,
    workers: int | None = None,
) -> int:
    """Render every message of the send steps, print a table and a summary.

    ``fmt`` ``json`` or ``csv`` also writes every message to ``output``.
    ``workers``: processes for large files (None: one per core). Exit 0 when
    every recipient's text renders, 1 when any fails (reasons listed).
    """
    if fmt not in ("text", "json", "csv"):
        raise UsageError(f"unknown format {fmt!r} (text, json or csv)")
    steps = send_steps(campaign, step)
    if not steps:
        out.write(f"{campaign.name}: no send step, nothing to preview\n")
        return 0
    writing = fmt if output is not None and fmt != "text" else "text"
    job = batch.Job(campaign, tuple(t for _, t in steps), writing, show_phones, steps)
    tallies = [_Tally(s, t) for s, t in steps]
    stats = RecipientStats()
    written = 0
    if writing == "csv":
        assert output is not None
        output.write(batch.CSV_HEADER)
    sink = output if writing != "text" else None
    for _, phone, _, messages in accepted(batch.events(job, workers), stats):
        for tally, m in zip(tallies, messages, strict=True):
            tally.add(m)
            if len(tally.shown) < limit:
                tally.shown.append((phone, Message._make(m)))
            if sink is not None:
                record = m[-1]
                if writing == "json":
                    record = ("[\n" if not written else ",\n") + record
                sink.write(record)
                written += 1
    if sink is not None:
        if writing == "json":
            sink.write("\n]\n" if written else "[]\n")
        sink.flush()
    for t in tallies:
        out.write(f"step {t.step} (template {t.template}):\n")
        _table(t.shown, out)
    _summary(campaign, tallies, stats, out)
    return 1 if any(t.failed for t in tallies) else 0


def _excerpt(text: str) -> str:
    flat = text.replace("\r", "").replace("\n", " ⏎ ")
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 1] + "…"


def _table(rows: list[tuple[str, Message]], out: TextIO) -> None:
    if not rows:
        out.write("  (no recipient)\n")
        return
    width = max(len("PHONE"), *(len(p) for p, _ in rows))
    out.write(f"  {'PHONE':<{width}}  ENC    SEG  TEXT\n")
    for phone, m in rows:
        if m.error:
            out.write(f"  {phone:<{width}}  -        -  ERROR: {m.error}\n")
        else:
            cells = f"{phone:<{width}}  {m.encoding:<5} {m.segments:>4}"
            out.write(f"  {cells}  {_excerpt(m.text)}\n")


def _summary(
    campaign: Campaign, tallies: list[_Tally], stats: RecipientStats, out: TextIO
) -> None:
    out.write(
        f"\nrecipients: {stats.read:,} read, {stats.invalid:,} invalid, "
        f"{stats.duplicates:,} duplicates, {stats.excluded:,} excluded, "
        f"{stats.filtered_out:,} filtered out, {stats.accepted:,} accepted\n"
    )
    for t in tallies:
        encodings = ", ".join(
            f"{enc} {t.by_encoding[enc]:,}" for enc in (GSM7, UCS2) if t.by_encoding[enc]
        )
        out.write(
            f"step {t.step}: {t.messages:,} messages, {t.segments:,} segments"
            f"{f' ({encodings})' if encodings else ''}, {t.failed:,} failed\n"
        )
    warned: set[str] = set()
    for t in tallies:
        if t.forced_ucs2 and t.template not in warned:
            warned.add(t.template)
            out.write(f"warning: {_ucs2_warning(campaign, t)}\n")
    if stats.invalid:
        out.write(f"\ninvalid recipients ({stats.invalid:,}, skipped):\n")
        for bad in stats.invalid_rows:
            out.write(f"  {bad.format()}\n")
        if stats.invalid > len(stats.invalid_rows):
            out.write(f"  ... and {stats.invalid - len(stats.invalid_rows):,} more\n")
    for t in tallies:
        if t.failed:
            out.write(f"\nstep {t.step}: {t.failed:,} recipients cannot be rendered:\n")
            for reason in t.failures:
                out.write(f"  {reason}\n")
            if t.failed > len(t.failures):
                out.write(f"  ... and {t.failed - len(t.failures):,} more\n")


def _ucs2_warning(campaign: Campaign, t: _Tally) -> str:
    """Which characters made messages UCS-2, and whether the template or the data."""
    template = campaign.templates.get(t.template)
    source = ""
    if template is not None:
        source = (template.text or "") + "".join((template.variants or {}).values())
    named = []
    for ch, _ in t.culprits.most_common(5):
        name = unicodedata.name(ch, "")
        where = "in the template" if ch in source else "from recipient data"
        named.append(f"{ch!r} (U+{ord(ch):04X}{' ' + name if name else ''}) {where}")
    return (
        f"template {t.template!r}: {t.forced_ucs2:,} of {t.messages:,} messages are "
        f"UCS-2 (70 characters a segment, not 160) only because of "
        f"{', '.join(named)} (the gsm filter replaces typographic quotes and dashes)"
    )
