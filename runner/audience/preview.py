"""``preview``: every message rendered and counted, nothing sent.

The same pass (read -> normalise -> dedup -> render -> segments) gives the
engine its ``segments('step')`` figures for ``check_credits``, so what preview
shows is what a run would plan. Rows are checked and rendered by chunk (in
worker processes for a large file, see runner.audience.render); what depends on order
(duplicates, totals, output) is merged here, in file order.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from runner.audience import render as batch
from runner.audience.encoding import GSM7, UCS2
from runner.audience.recipients import RecipientStats
from runner.audience.render import BY_DATA, BY_TEXT, FAILED, GSM, UNICODE, Message, Pack
from runner.errors import RecipientError, UsageError
from runner.model.campaign import SendAction

if TYPE_CHECKING:
    from runner.model.campaign import Campaign

MAX_FAILURES_LISTED = 50
EXCERPT = 48


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
    by_text: int = 0  # UCS-2 messages due to a few non-GSM characters in the text
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
        for n, error in out.errors.items():
            if len(self.failures) >= MAX_FAILURES_LISTED:
                break
            if n not in skip:
                self.failures.append(error)
        for n, shown in enumerate(out.shown):
            if len(self.shown) >= limit:
                break
            if n not in skip:
                self.shown.append(shown)

    def totals(self) -> SendTotals:
        by_encoding = {k: v for k, v in self.by_encoding.items() if v}
        return SendTotals(self.messages, self.segments, by_encoding, self.failed)


class _Merge:
    """Packs in file order: duplicates dropped (the first row wins), all counted,
    every kept message tallied and written."""

    def __init__(
        self, steps: list[tuple[str, str]], limit: int, fmt: str, sink: TextIO | None
    ) -> None:
        self.stats = RecipientStats()
        self.tallies = [_Tally(s, t) for s, t in steps]
        self.limit, self.fmt, self.sink = limit, fmt, sink
        self.seen: set[int] = set()
        self.written = 0

    def wants_details(self) -> bool:
        return any(len(t.shown) < self.limit for t in self.tallies)

    def add(self, pack: Pack) -> None:
        stats, seen, where = self.stats, self.seen, pack.where
        stats.read += pack.read
        stats.excluded += pack.excluded
        for bad in pack.invalid:
            stats.add_invalid(bad)
        dropped: list[int] = []  # duplicates among the rows that have messages
        row = 0  # index of the next row that has messages
        for i, key in enumerate(pack.keys):
            passed = where.get(i, True) if where else True
            if key in seen:
                stats.duplicates += 1
                if passed is True:
                    dropped.append(row)
                    row += 1
                continue
            seen.add(key)
            if passed is True:
                stats.accepted += 1
                row += 1
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

    def close(self) -> None:
        if self.sink is None:
            return
        if self.fmt == "json":
            self.sink.write("\n]\n" if self.written else "[]\n")
        self.sink.flush()


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
    merge = _Merge(steps, 0, "text", None)
    for pack in batch.packs(batch.Job(campaign, steps), merge.wants_details):
        merge.add(pack)
    return merge.tallies[0].totals()


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
    sink = output if writing != "text" else None
    if sink is not None and writing == "csv":
        sink.write(batch.CSV_HEADER)
    merge = _Merge(steps, limit, writing, sink)
    job = batch.Job(campaign, steps, writing, show_phones)
    for pack in batch.packs(job, merge.wants_details, workers):
        merge.add(pack)
    merge.close()
    for t in merge.tallies if limit else []:
        out.write(f"step {t.step} (template {t.template}):\n")
        _table(t.shown, out)
    _summary(campaign, merge.tallies, merge.stats, out)
    return 1 if any(t.failed for t in merge.tallies) else 0


def _excerpt(text: str) -> str:
    flat = text.replace("\r", "").replace("\n", " ⏎ ")
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 1] + "…"


def _table(rows: list[tuple[str, Message]], out: TextIO) -> None:
    if not rows:
        out.write("  (no recipient)\n")
        return
    width = max(len("PHONE"), *(len(p) for p, _ in rows))
    out.write(f"  {'PHONE':<{width}}  ENC    SEG  TEXT\n")
    for phone, (encoding, _, segments, _, text, error) in rows:
        if error:
            out.write(f"  {phone:<{width}}  -        -  ERROR: {error}\n")
        else:
            cells = f"{phone:<{width}}  {encoding:<5} {segments:>4}"
            out.write(f"  {cells}  {_excerpt(text)}\n")


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
        if t.culprits and t.template not in warned:
            warned.add(t.template)
            for line in _ucs2_warnings(campaign, t):
                out.write(f"warning: {line}\n")
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


def _ucs2_warnings(campaign: Campaign, t: _Tally) -> list[str]:
    """Which few characters made messages UCS-2: in the template text, or in data."""
    source = batch.template_text(campaign, t.template)
    in_text = [ch for ch, _ in t.culprits.most_common() if ch in source]
    in_data = [ch for ch, _ in t.culprits.most_common() if ch not in source]
    lead = f"template {t.template!r}:"
    cost = "(70 characters a segment, not 160)"
    lines = []
    if t.by_text:
        lines.append(
            f"{lead} {t.by_text:,} of {t.messages:,} messages are UCS-2 {cost} because "
            f"its text has {_names(in_text)}"
        )
    if t.by_data:
        lines.append(
            f"{lead} {t.by_data:,} of {t.messages:,} messages are UCS-2 {cost} because "
            f"of {_names(in_data)} in recipient data (the gsm filter replaces "
            "typographic quotes and dashes in a value)"
        )
    return lines


def _names(chars: list[str]) -> str:
    named = []
    for ch in chars[:5]:
        name = unicodedata.name(ch, "")
        named.append(f"{ch!r} (U+{ord(ch):04X}{' ' + name if name else ''})")
    more = f" and {len(chars) - 5} more" if len(chars) > 5 else ""
    return ", ".join(named) + more


def preview_file(
    path: Path,
    *,
    step: str | None,
    limit: int,
    fmt: str,
    output: str | None,
    show_phones: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """The ``preview`` command: load the campaign, then :func:`preview` it.

    Messages in json/csv go to ``output`` (a path, ``-`` or None for stdout, in
    which case the table and summary go to ``err``).
    """
    from runner.loader.load import load_campaign

    if limit < 0:
        raise UsageError("--limit must be 0 or more")
    if output is not None and fmt == "text":
        raise UsageError("--output needs --format json or csv")
    campaign, _ = load_campaign(path)
    run = partial(
        preview, campaign, limit=limit, fmt=fmt, show_phones=show_phones, step=step
    )
    if fmt == "text":
        return run(output=None, out=out)
    if output is None or output == "-":
        return run(output=out, out=err)
    try:
        sink = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as e:
        raise UsageError(f"--output {output}: {e.strerror or e}") from None
    with sink:
        return run(output=sink, out=out)
