"""``campaign-runner preview``: every message rendered and counted, nothing sent."""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from runner.audience import render as batch
from runner.audience.encoding import GSM7, UCS2
from runner.audience.preview import Tally, render_all, send_steps
from runner.audience.recipient import RecipientStats
from runner.audience.recipients import iter_recipients
from runner.audience.render import Message
from runner.audience.templates import filter_hint
from runner.audience.zones import ZoneFinder
from runner.commands.args import add_state
from runner.commands.output import excerpt
from runner.engine.scheduler import next_window_open
from runner.errors import UsageError
from runner.journal.journal import Journal
from runner.journal.where import locate
from runner.loader.load import load_campaign
from runner.model.campaign import Campaign, SendAction


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the campaign file")
    p.add_argument(
        "--step", metavar="ID", help="only this send step (default: every send step)"
    )
    p.add_argument(
        "--limit", type=int, default=10, help="messages shown in the table (default 10)"
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help="text: table and summary; json or csv: every message, for other tools",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="file for --format json/csv (default stdout; the summary goes to stderr)",
    )
    p.add_argument(
        "--show-phones", action="store_true", help="full phone numbers, not masked"
    )
    add_state(p)


def main(args: argparse.Namespace) -> int:
    """Render every message of a campaign without sending anything; count segments.

    Exit status: 0 every message renders, 1 a recipient's text cannot be
    rendered (reasons listed), 2 invalid campaign or usage.
    """
    return preview_file(
        Path(args.file),
        step=args.step,
        limit=args.limit,
        fmt=args.format,
        output=args.output,
        show_phones=args.show_phones,
        out=sys.stdout,
        err=sys.stderr,
        state=args.state,
    )


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
    suppressed: frozenset[int] = frozenset(),
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
    merge = render_all(
        campaign,
        steps,
        limit=limit,
        fmt=writing,
        sink=sink,
        show_phones=show_phones,
        workers=workers,
        suppressed=suppressed,
    )
    for t in merge.tallies if limit else []:
        out.write(f"step {t.step} ({_what(campaign, t.step, t.template)}):\n")
        _table(t.shown, out)
    _summary(campaign, merge.tallies, merge.stats, out)
    for line in zone_lines(campaign, [s for s, _ in steps]):
        out.write(line + "\n")
    if merge.on_list:
        out.write(
            f"suppressed: {merge.on_list:,} of the accepted recipients are on the "
            "journal's suppression list: no send step sends to them\n"
        )
    return 1 if any(t.failed for t in merge.tallies) else 0


def _what(campaign: Campaign, step_id: str, template: str) -> str:
    """What a step's messages are: a template's text, with a PIN, or fired."""
    action = campaign.step(step_id).action
    if isinstance(action, SendAction) and action.fire:
        return "fired as incoming messages: the step's text"
    if isinstance(action, SendAction) and action.pin is not None:
        return (
            f"template {template}, the provider adds a {action.pin.length}-character PIN"
        )
    return f"template {template}"


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
            out.write(f"  {cells}  {excerpt(text)}\n")


def _summary(
    campaign: Campaign, tallies: list[Tally], stats: RecipientStats, out: TextIO
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
            who = "recipient" if t.failed == 1 else "recipients"
            out.write(
                f"\nstep {t.step} (template {t.template}): {t.failed:,} {who} "
                "cannot be rendered:\n"
            )
            for line in t.failures.lines():
                out.write(f"  {line}\n")


def _ucs2_warnings(campaign: Campaign, t: Tally) -> list[str]:
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
        hint = filter_hint(in_data)
        lines.append(
            f"{lead} {t.by_data:,} of {t.messages:,} messages are UCS-2 {cost} because "
            f"of {_names(in_data)} in recipient data" + (f" ({hint})" if hint else "")
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
    state: str | None = None,
) -> int:
    """The ``preview`` command: load the campaign, then :func:`preview` it.

    Messages in json/csv go to ``output`` (a path, ``-`` or None for stdout, in
    which case the table and summary go to ``err``).
    """
    if limit < 0:
        raise UsageError("--limit must be 0 or more")
    if output is not None and fmt == "text":
        raise UsageError("--output needs --format json or csv")
    campaign, _ = load_campaign(path)
    run = partial(
        preview,
        campaign,
        limit=limit,
        fmt=fmt,
        show_phones=show_phones,
        step=step,
        suppressed=suppressed_keys(state, campaign),
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


def suppressed_keys(state: str | None, campaign: Campaign) -> frozenset[int]:
    """The numbers a real run of ``campaign`` would skip, as preview's keys (the
    digits of the E.164 number); none without a journal."""
    where = locate(state)
    if not where.exists():
        return frozenset()
    journal = Journal(where)
    try:
        rows = journal.suppressions("real")
    finally:
        journal.close()
    transactional = campaign.kind == "transactional"
    return frozenset(
        int(r.phone.lstrip("+")) for r in rows if not transactional or r.scope == "all"
    )


def zone_lines(
    campaign: Campaign, step_ids: list[str], now: datetime | None = None
) -> list[str]:
    """Per zone, for each send step whose window is on the recipients' clocks:
    how many recipients, and when the window opens there."""
    now = now or datetime.now(UTC)
    lines = []
    for step in campaign.steps:
        window = step.timing.window
        if step.id not in step_ids or window is None or not window.per_recipient:
            continue
        find = ZoneFinder(window, campaign.timezone)
        counts = Counter(find(r.phone, r.fields) for r in iter_recipients(campaign))
        lines.append(
            f"step {step.id}: window {window.start:%H:%M}-{window.end:%H:%M} on each "
            f"recipient's clock, at {now:%Y-%m-%d %H:%M} UTC:"
        )
        for zone, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            tz = ZoneInfo(zone)
            opens = next_window_open(window, now, tz)
            when = "open now" if opens == now else f"opens {opens:%Y-%m-%d %H:%M %Z}"
            lines.append(f"  {zone}: {n:,} recipients, {when}")
    return lines
