"""Rendering every recipient's messages, in worker processes for large files.

The per-row work (parse, phone, opt-out, ``where``, render, segments, output
line) does not depend on other rows, so the rows are taken in chunks and each
chunk becomes one :class:`Pack`: its counts, its numbers in order, and per
template a byte per message, the segments and the output text. The caller
merges packs in file order and does what depends on order (duplicates, totals,
writing), touching each row once, cheaply. A large file's chunks are packed by
forked worker processes; small files and inline lists by the same code in-process.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing
import os
import re
import signal
import sys
import threading
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import accumulate
from typing import Any, NamedTuple

from runner.audience import sources
from runner.audience.encoding import UCS2
from runner.audience.failures import Unrendered
from runner.audience.numberset import Closes
from runner.audience.phones import mask_phone
from runner.audience.recipient import InvalidRow, Recipient
from runner.audience.recipients import Screen
from runner.audience.templates import Renderer
from runner.errors import RecipientError, TemplateError, UsageError
from runner.model.campaign import Campaign

log = logging.getLogger(__name__)

PARALLEL_BYTES = 2 * 1024 * 1024  # smaller files: one process (startup ~0.1 s)
CHUNK_LINES = 2000
COLUMNS = (
    "step",
    "template",
    "phone",
    "source",
    "line",
    "encoding",
    "units",
    "segments",
    "text",
    "error",
)
CSV_HEADER = ",".join(COLUMNS) + "\n"

# One message's kind, a byte in Output.kinds
GSM, UNICODE, FAILED = b"G", b"U", b"F"
# Why a UCS-2 message is UCS-2, a byte in Output.forced: a few characters of the
# template's text, a few only in the recipient's data, or neither (many, or GSM)
BY_TEXT, BY_DATA, NOT_FORCED = b"T", b"D", b"-"

# (encoding, units, segments, non_gsm, text, error): one message, for the table
Message = tuple[str, int, int, tuple[str, ...], str, str]


class Output(NamedTuple):
    """One template over a chunk's accepted rows (those ``where`` lets through)."""

    kinds: bytes  # GSM, UNICODE or FAILED per row
    forced: bytes  # BY_TEXT, BY_DATA or NOT_FORCED per row
    segments: array[int]  # per row (0 when failed)
    errors: dict[int, Unrendered]  # row -> why it failed
    culprits: Counter[str]  # characters that forced UCS-2 (to name the worst)
    shown: list[tuple[str, Message]]  # (phone, message) per row, when asked


class Pack(NamedTuple):
    """A chunk of rows, checked and rendered."""

    read: int
    excluded: int
    invalid: list[InvalidRow]
    keys: list[int]  # the E.164 number (as an int) of every other row, in order
    where: dict[int, bool | str]  # index in keys -> False (filtered) or the error
    outputs: list[Output]  # one per template; rows = keys where ``where`` passed
    text: str  # the rows' CSV lines or ",\n"-led JSON objects ("" when not writing)
    ends: array[int]  # where each row's part of ``text`` ends (all its templates)


class Job(Closes):
    """What to render for every row, and how to write it."""

    def __init__(
        self,
        campaign: Campaign,
        steps: list[tuple[str, str]],
        fmt: str = "text",
        show_phones: bool = False,
        now: datetime | None = None,
    ) -> None:
        self.campaign = campaign
        self.steps = steps  # (step id, template name)
        self.fmt = fmt
        self.show_phones = show_phones
        self.renderer = Renderer(campaign, now)  # one ``now`` for every worker
        self.screen = Screen(campaign)  # last: it may hold a temporary file
        self._where = bool(campaign.recipients.where)
        source = self.screen.source
        # the constant parts of each step's CSV record
        self._prefix = [f"{_q(s)},{_q(t)}," for s, t in steps]
        self._source = f",{_q(source)},"
        self._texts = [template_text(campaign, t) for _, t in steps]

    def close(self) -> None:
        """Remove the opt-out list's temporary file, if it has one."""
        self.screen.close()

    def pack(self, rows: Iterable[sources.Row], details: bool = False) -> Pack:
        """Check and render a chunk of rows; ``details`` keeps each message too."""
        screen, where_on = self.screen, self._where
        matches = screen.matches
        got_rows = [screen.read(row) for row in rows]
        read = len(got_rows)
        opted_out = iter(
            screen.excluded_among([g for g in got_rows if isinstance(g, Recipient)])
        )
        excluded = 0
        invalid: list[InvalidRow] = []
        keys: list[int] = []
        where: dict[int, bool | str] = {}
        accepted: list[tuple[Recipient, str]] = []
        for got in got_rows:
            if isinstance(got, InvalidRow):
                invalid.append(got)
                continue
            if next(opted_out):
                excluded += 1
                continue
            if where_on:
                try:
                    if not matches(got):
                        where[len(keys)] = False
                        keys.append(got.key)
                        continue
                except RecipientError as e:
                    where[len(keys)] = str(e)
                    keys.append(got.key)
                    continue
            keys.append(got.key)
            accepted.append(
                (got, got.phone if self.show_phones else mask_phone(got.phone))
            )
        outputs, text, ends = self._render(accepted, details)
        return Pack(read, excluded, invalid, keys, where, outputs, text, ends)

    def _render(
        self, accepted: list[tuple[Recipient, str]], details: bool
    ) -> tuple[list[Output], str, array[int]]:
        """Every template for every row; a row's records stay together, in step order."""
        render, record = self.renderer.render, self._record
        writing = self.fmt != "text"
        templates = [
            (i, step, name, self._texts[i]) for i, (step, name) in enumerate(self.steps)
        ]
        kinds = [bytearray() for _ in templates]
        forced = [bytearray() for _ in templates]
        segments = [array("I") for _ in templates]
        errors: list[dict[int, Unrendered]] = [{} for _ in templates]
        culprits: list[Counter[str]] = [Counter() for _ in templates]
        shown: list[list[tuple[str, Message]]] = [[] for _ in templates]
        texts: list[str] = []
        for n, (r, phone) in enumerate(accepted):
            parts = []
            for i, step, name, source in templates:
                try:
                    rendered = render(name, r)
                except TemplateError as e:
                    errors[i][n] = Unrendered.of(e)
                    error = str(e)
                    kinds[i] += FAILED
                    forced[i] += NOT_FORCED
                    segments[i].append(0)
                    if writing:
                        parts.append(record(i, step, name, r, phone, "", 0, 0, "", error))
                    if details:
                        shown[i].append((phone, ("", 0, 0, (), "", error)))
                    continue
                s, text = rendered.segmentation, rendered.text
                segments[i].append(s.segments)
                if s.encoding != UCS2:
                    kinds[i] += GSM
                    forced[i] += NOT_FORCED
                else:  # every UCS-2 message warns, however many characters did it
                    kinds[i] += UNICODE
                    in_text = any(c in source for c in s.non_gsm)
                    forced[i] += BY_TEXT if in_text else BY_DATA
                    culprits[i].update(s.non_gsm)
                if writing:
                    counts = (s.encoding, s.units, s.segments)
                    parts.append(record(i, step, name, r, phone, *counts, text, ""))
                if details:
                    message = (s.encoding, s.units, s.segments, s.non_gsm, text, "")
                    shown[i].append((phone, message))
            if writing:
                texts.append("".join(parts))
        outputs = [
            Output(bytes(kinds[i]), bytes(forced[i]), segments[i], errors[i], culprits[i],
                   shown[i])
            for i, _, _, _ in templates
        ]  # fmt: skip
        return outputs, "".join(texts), array("I", accumulate(map(len, texts)))

    def _record(
        self,
        i: int,
        step: str,
        name: str,
        r: Recipient,
        phone: str,
        encoding: str,
        units: int,
        segments: int,
        text: str,
        error: str,
    ) -> str:
        """The message as one CSV line or ``,\\n`` and a JSON object."""
        if self.fmt == "csv":
            return (
                f"{self._prefix[i]}{phone}{self._source}{r.line or r.row},{encoding},"
                f"{units},{segments},{_q(text)},{_q(error) if error else ''}\n"
            )
        body = None if error else text
        values = (step, name, phone, r.source, r.line or r.row, encoding or None, units)
        record = dict(zip(COLUMNS, (*values, segments, body, error or None), strict=True))
        return ",\n" + json.dumps(record, ensure_ascii=False)


def template_text(campaign: Campaign, name: str) -> str:
    """A template's text(s), to tell its own characters from the recipients' data."""
    template = campaign.templates.get(name)
    if template is None:
        return ""
    return (template.text or "") + "".join((template.variants or {}).values())


_QUOTE = re.compile('[,"\r\n]')


def _q(value: str) -> str:
    """A CSV field the way the csv module writes it (excel dialect, minimal quoting)."""
    if _QUOTE.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def packs(
    job: Job, details: Callable[[], bool], workers: int | None = None
) -> Iterator[Pack]:
    """The source's rows as packs in file order; ``details()`` says, when a chunk
    is handed out, whether its messages are still wanted whole (for the table)."""
    screen = job.screen
    n = _worker_count(job, workers)
    if screen.campaign.recipients.file is None:
        yield job.pack(screen.rows(), details())
        return
    layout = screen.layout()
    if n <= 1 or not sources.splittable(screen.encoding):
        chunks = sources.chunks(
            screen.path, screen.source, screen.encoding, layout, CHUNK_LINES, screen.hint
        )
        for chunk in chunks:
            rows = sources.parse(layout, chunk.lines, chunk.first_line, screen.source)
            yield job.pack(rows, details())
        return
    spans = sources.spans(screen.path, screen.source, layout, CHUNK_LINES)
    yield from _parallel(job, layout, spans, details, n)


def _parallel(
    job: Job,
    layout: sources.Layout,
    spans: Iterator[sources.Span],
    details: Callable[[], bool],
    n: int,
) -> Iterator[Pack]:
    """Byte ranges of the file dealt round-robin to ``n`` forked workers, which
    read and pack them; packs read back in order.

    Two ranges a worker in flight, so that it never waits for this process. A
    task is a few bytes, so sending one never blocks; a worker may block sending
    a pack, but only until this process reads it, which it does in order.
    Plain pipes, no pool: a pool's helper threads would compete for the GIL.
    """
    ctx = multiprocessing.get_context("fork")
    conns: list[Any] = []
    procs: list[Any] = []
    # merging makes no reference cycles; a collection would walk the numbers seen
    # (up to NumberSet's limit of them) again and again (this process has no
    # other thread)
    collecting = gc.isenabled()
    gc.disable()
    inflight: deque[int] = deque()

    def submit(i: int) -> None:
        span = next(spans, None)
        if span is not None:
            conns[i].send((span, details()))
            inflight.append(i)

    log.info("preview: %d worker processes", n)
    try:
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(job, layout, child), daemon=True)
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        for _ in range(2):
            for i in range(n):
                submit(i)
        while inflight:
            i = inflight.popleft()
            try:
                ok, result = conns[i].recv()
            except EOFError:
                raise RecipientError("a preview worker process died") from None
            if not ok:
                raise result
            submit(i)
            yield result
    finally:
        for conn in conns:
            # a word to stop: forked workers hold copies of every pipe end, so
            # closing ours would not end their recv()
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        if collecting:
            gc.enable()


def _serve(job: Job, layout: sources.Layout, conn: Any) -> None:
    """A worker: byte ranges in, packs out, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # what we inherited (templates, phone metadata) is never garbage: left out of
    # every collection, which otherwise walks it again and again (~20% of the time)
    gc.freeze()
    screen = job.screen
    source = screen.source
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        span, details = task
        try:
            lines = sources.read_span(
                screen.path, source, screen.encoding, span, screen.hint
            )
            rows = sources.parse(layout, lines, span.first_line, source)
            result: Any = (True, job.pack(rows, details))
        except Exception as e:  # shown by the parent's error boundary
            result = (False, e)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


def _worker_count(job: Job, workers: int | None) -> int:
    src = job.campaign.recipients
    # fork shares the loaded campaign and compiled templates for free; only on
    # Linux is it safe (macOS system libraries object to it)
    if src.file is None or not sys.platform.startswith("linux"):
        return 1
    # forking a process that runs threads (a test's HTTP server) is unsafe
    if threading.active_count() > 1:
        return 1
    if workers is None and os.environ.get("CAMPAIGN_RUNNER_WORKERS"):
        try:
            workers = int(os.environ["CAMPAIGN_RUNNER_WORKERS"])
        except ValueError:
            raise UsageError("CAMPAIGN_RUNNER_WORKERS must be a number") from None
    if workers is not None:
        return workers
    try:
        size = job.screen.path.stat().st_size
    except OSError:
        return 1  # reading it will say why
    if size < PARALLEL_BYTES:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
