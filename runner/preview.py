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
from functools import partial
from pathlib import Path
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
    source: str = ""  # the template's text(s), to tell its characters from data's
    by_text: int = 0  # UCS-2 messages due to a few non-GSM characters in the text
    by_data: int = 0  # ... only in the recipient's data
    culprits: Counter[str] = field(default_factory=Counter)
    shown: list[tuple[str, Message]] = field(default_factory=list)

    def add(self, m: Message) -> None:
        encoding, _, segments, non_gsm, _, error, _ = m
        if error:
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append(error)
            return
        self.messages += 1
        self.segments += segments
        self.by_encoding[encoding] += 1
        if encoding == UCS2 and len(non_gsm) <= FEW_NON_GSM:
            if any(ch in self.source for ch in non_gsm):
                self.by_text += 1
            else:
                self.by_data += 1
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
            key, _, where, _ = ev
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
    tallies = [_Tally(s, t, source=_template_text(campaign, t)) for s, t in steps]
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
                tally.shown.append((phone, m))
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
    for t in tallies if limit else []:
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
    for phone, (encoding, _, segments, _, text, error, _) in rows:
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


def _template_text(campaign: Campaign, name: str) -> str:
    template = campaign.templates.get(name)
    if template is None:
        return ""
    return (template.text or "") + "".join((template.variants or {}).values())


def _ucs2_warnings(campaign: Campaign, t: _Tally) -> list[str]:
    """Which few characters made messages UCS-2: in the template text, or in data."""
    in_text = [ch for ch, _ in t.culprits.most_common() if ch in t.source]
    in_data = [ch for ch, _ in t.culprits.most_common() if ch not in t.source]
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
    from runner.loader import load_campaign

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
