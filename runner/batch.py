"""Rendering every recipient's messages, in worker processes for large files.

The per-row work (parse, phone, opt-out, ``where``, render, segments, output
line) does not depend on other rows, so a large file is cut into chunks of whole
records that worker processes turn into :data:`Event` lists; the caller reads
them back in file order and does what does depend on order (duplicates, counts,
writing). Small files and inline lists take the same per-row code in-process.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import threading
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runner import sources
from runner.errors import RecipientError, TemplateError, UsageError
from runner.phones import mask_phone
from runner.recipients import InvalidRow, Recipient, Screen
from runner.templating import Renderer

if TYPE_CHECKING:
    from runner.campaign import Campaign

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


# One template rendered for one recipient, as a plain tuple (named tuples cost
# ~1 µs each to build and pickle ~7x slower, per message):
#   (encoding, units, segments, non_gsm, text, error, record)
# ``error`` is "" when it rendered; ``record`` is its CSV line or JSON object
# ("" when not writing). Consumers unpack.
Message = tuple[str, int, int, tuple[str, ...], str, str, str]
# A recipient who passed the checks: (key, phone, where, messages). ``key`` is the
# E.164 number as an int, ``phone`` as shown (masked unless show_phones), ``where``
# True/False or the error evaluating it, ``messages`` one per template.
Accepted = tuple[int, str, bool | str, tuple[Message, ...]]
# None: an opted-out number.
Event = Accepted | InvalidRow | None


class Job:
    """What to render for every row, and how to write it."""

    def __init__(
        self,
        campaign: Campaign,
        templates: tuple[str, ...],
        fmt: str = "text",
        show_phones: bool = False,
        steps: list[tuple[str, str]] | None = None,
        now: datetime | None = None,
    ) -> None:
        self.campaign = campaign
        self.templates = templates
        self.steps = steps or [("", t) for t in templates]
        self.fmt = fmt
        self.show_phones = show_phones
        self.screen = Screen(campaign)
        self.renderer = Renderer(campaign, now)  # one ``now`` for every worker
        self._where = bool(campaign.recipients.where)
        source = self.screen.source
        # the constant start of each step's CSV record
        self._prefix = [f"{_q(s)},{_q(t)}," for s, t in self.steps]
        self._source = f",{_q(source)},"

    def event(self, row: sources.Row) -> Event:
        got = self.screen.check(row)
        if not isinstance(got, Recipient):
            return got
        if self._where:
            try:
                if not self.screen.matches(got):
                    return (got.key, "", False, ())
            except RecipientError as e:
                return (got.key, "", str(e), ())
        phone = got.phone if self.show_phones else mask_phone(got.phone)
        return (got.key, phone, True, self.messages(got, phone))

    def messages(self, r: Recipient, phone: str) -> tuple[Message, ...]:
        out: list[Message] = []
        for i, (step, name) in enumerate(self.steps):
            try:
                rendered = self.renderer.render(name, r)
            except TemplateError as e:
                error = str(e)
                record = self._record(i, step, name, r, phone, "", 0, 0, "", error)
                out.append(("", 0, 0, (), "", error, record))
                continue
            s, text = rendered.segmentation, rendered.text
            counts = (s.encoding, s.units, s.segments)
            record = self._record(i, step, name, r, phone, *counts, text, "")
            out.append((s.encoding, s.units, s.segments, s.non_gsm, text, "", record))
        return tuple(out)

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
        """The message as one CSV line or JSON object ("" when not writing)."""
        if self.fmt == "csv":
            return (
                f"{self._prefix[i]}{phone}{self._source}{r.line or r.row},{encoding},"
                f"{units},{segments},{_q(text)},{_q(error) if error else ''}\n"
            )
        if self.fmt == "json":
            body = None if error else text
            where = r.line or r.row
            values = (
                step,
                name,
                phone,
                r.source,
                where,
                encoding or None,
                units,
                segments,
            )
            record = dict(zip(COLUMNS, (*values, body, error or None), strict=True))
            return json.dumps(record, ensure_ascii=False)
        return ""


_QUOTE = re.compile('[,"\r\n]')


def _q(value: str) -> str:
    """A CSV field the way the csv module writes it (excel dialect, minimal quoting)."""
    if _QUOTE.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def events(job: Job, workers: int | None = None) -> Iterator[Event]:
    """Every row's event, in file order; in worker processes for a large file."""
    n = _worker_count(job, workers)
    if n <= 1:
        for row in job.screen.rows():
            yield job.event(row)
        return
    screen = job.screen
    layout = screen.layout()
    chunks = sources.chunks(
        screen.path, screen.source, screen.encoding, layout, CHUNK_LINES
    )
    yield from _parallel(job, layout, chunks, n)


def _parallel(
    job: Job, layout: sources.Layout, chunks: Iterator[sources.Chunk], n: int
) -> Iterator[Event]:
    """Chunks dealt round-robin to ``n`` forked workers, results read back in order.

    One chunk a worker in flight: the file is never read ahead, and neither side
    can block sending while the other does. Plain pipes, no pool: a pool's helper
    threads would compete with this one for the GIL.
    """
    ctx = multiprocessing.get_context("fork")
    conns: list[Any] = []
    procs: list[Any] = []
    try:
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(job, layout, child), daemon=True)
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        inflight: deque[int] = deque()
        for i in range(n):
            chunk = next(chunks, None)
            if chunk is None:
                break
            conns[i].send(chunk)
            inflight.append(i)
        while inflight:
            i = inflight.popleft()
            try:
                ok, result = conns[i].recv()
            except EOFError:
                raise RecipientError("a preview worker process died") from None
            chunk = next(chunks, None)
            if chunk is not None:
                conns[i].send(chunk)
                inflight.append(i)
            if not ok:
                raise result
            yield from result
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


def _serve(job: Job, layout: sources.Layout, conn: Any) -> None:
    """A worker: chunks in, events out (plain tuples), until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    source = job.screen.source
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        try:
            rows = sources.parse(layout, chunk.lines, chunk.first_line, source)
            result: Any = (True, [job.event(row) for row in rows])
        except Exception as e:  # shown by the parent's error boundary
            result = (False, e)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


def _worker_count(job: Job, workers: int | None) -> int:
    src = job.campaign.recipients
    if src.file is None or "fork" not in multiprocessing.get_all_start_methods():
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
