"""Reading recipient files as streams of rows: CSV (sniffed), JSON Lines, plain lists.

A file is read line by line and never held whole. ``chunks`` cuts a file into
blocks of whole records (a quoted CSV field may span lines) for worker
processes, which parse them with the same functions as the one-process path.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from runner.errors import RecipientError

DELIMITERS = ",;\t|"
SNIFF_BYTES = 1024
DECODE_BLOCK = 1 << 20  # bytes decoded at a time when checking a whole file


# what to do about a file that is not UTF-8: the recipients file can say its
# encoding (the Screen words it), opt-out lists cannot
EXCLUDE_HINT = "save it as UTF-8: opt-out lists are read as UTF-8"


class Row(NamedTuple):
    fields: Mapping[str, Any] | None  # None: unreadable, see error
    row: int  # 1-based data row (within its chunk, for a chunk)
    line: int  # the file line the row starts on; 0 for inline rows
    error: str = ""


class Layout(NamedTuple):
    """How to parse a file's records: ``csv`` with its header, or ``jsonl``."""

    fmt: str
    dialect: type[csv.Dialect] | None = None
    header: tuple[str, ...] = ()


class Chunk(NamedTuple):
    first_line: int  # file line of lines[0]
    lines: list[str]


def open_text(path: Path, name: str, encoding: str) -> TextIO:
    try:
        return path.open(encoding=encoding, newline="")
    except OSError as e:
        raise RecipientError(f"{name}: cannot read: {e.strerror or e}") from None


def codec(name: str | None, source: str) -> str:
    """The codec to read with; UTF-8 also tolerates a byte order mark."""
    try:
        found = codecs.lookup(name or "utf-8").name
    except LookupError:
        raise RecipientError(f"{source}: unknown encoding {name!r}") from None
    return "utf-8-sig" if found == "utf-8" else found


def dialect(sample: str, delimiter: str | None = None) -> type[csv.Dialect]:
    """Excel-style CSV with the configured delimiter, else the one the header uses
    most among ``, ; TAB |`` (a comma when it has none: one column)."""
    if delimiter is None:
        first = sample[:SNIFF_BYTES].splitlines()[0] if sample.strip() else ""
        counts = {d: first.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        delimiter = best if counts[best] else ","

    class Dialect(csv.excel):
        pass

    Dialect.delimiter = delimiter
    return Dialect


def read_layout(
    path: Path,
    name: str,
    encoding: str,
    fmt: str,
    delimiter: str | None,
    require: str,
    hint: str = "",
) -> Layout:
    """The header and dialect of a CSV file (``require``: a column it must have)."""
    if fmt == "jsonl":
        return Layout("jsonl")
    first = first_line(path, name, encoding, hint)
    d = dialect(first, delimiter)
    header = tuple(h.strip() for h in next(csv.reader([first], d), []))
    if require and require not in header:
        columns = ", ".join(repr(h) for h in header[:10]) or "none"
        raise RecipientError(
            f"{name}:1: no column {require!r} (columns: {columns}); "
            "set recipients.phone_field"
        )
    return Layout("csv", d, header)


def rows(
    path: Path, name: str, encoding: str, layout: Layout, hint: str = ""
) -> Iterator[Row]:
    """Every data row of a file, streamed (``hint``: see ``undecodable``)."""
    with open_text(path, name, encoding) as f:
        lines = _Lines(f, name, encoding, hint)
        if layout.fmt == "csv":
            next(lines, None)  # the header
            yield from parse(layout, lines, 2, name)
        else:
            yield from parse(layout, lines, 1, name)


def parse(
    layout: Layout, lines: Iterable[str], first_line: int, name: str
) -> Iterator[Row]:
    """Rows from whole records of text; blank lines are skipped."""
    if layout.fmt == "jsonl":
        yield from _jsonl(lines, first_line)
        return
    header, width, row = layout.header, len(layout.header), 0
    reader = csv.reader(lines, layout.dialect)  # type: ignore[arg-type]
    consumed = 0
    try:
        for values in reader:
            start, consumed = first_line + consumed, reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            row += 1
            if len(values) != width and (
                len(values) < width or any(v.strip() for v in values[width:])
            ):
                yield Row(
                    None, row, start, f"{len(values)} fields, the header has {width}"
                )
                continue
            yield Row(dict(zip(header, values, strict=False)), row, start)
    except csv.Error as e:
        raise RecipientError(f"{name}:{first_line + consumed}: {e}") from None


def _jsonl(lines: Iterable[str], first_line: int) -> Iterator[Row]:
    row = 0
    for line, text in enumerate(lines, first_line):
        if not text.strip():
            continue
        row += 1
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            yield Row(None, row, line, f"not valid JSON ({e.msg})")
            continue
        if not isinstance(value, dict):
            yield Row(None, row, line, "not a JSON object")
            continue
        yield Row(value, row, line)


def chunks(
    path: Path, name: str, encoding: str, layout: Layout, size: int, hint: str = ""
) -> Iterator[Chunk]:
    """The file cut into blocks of about ``size`` lines, each holding whole records.

    A CSV record ends at a line end outside quotes: where the count of ``"`` so
    far is even (excel quoting doubles a quote inside a field).
    """
    with open_text(path, name, encoding) as f:
        lines = _Lines(f, name, encoding, hint)
        start = 1
        if layout.fmt == "csv":
            next(lines, None)
            start = 2
        block: list[str] = []
        quotes = 0
        for text in lines:
            block.append(text)
            if layout.fmt == "csv":
                quotes += text.count('"')
            if len(block) >= size and not quotes & 1:
                yield Chunk(start, block)
                start += len(block)
                block = []
        if block:
            yield Chunk(start, block)


class Span(NamedTuple):
    """Whole records of a file, as a byte range (for a worker to read itself)."""

    first_line: int
    start: int
    end: int


def splittable(encoding: str) -> bool:
    """Whether the encoding's bytes can be cut at ``\\n`` and counted for ``"``:
    UTF-8, Latin-1 and the like; not UTF-16 or UTF-32."""
    return 'a\n"'.encode(encoding).endswith(b'a\n"')  # a UTF-8 BOM may come first


def spans(path: Path, name: str, layout: Layout, size: int) -> Iterator[Span]:
    """``chunks`` as byte ranges, found without decoding (see ``splittable``)."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise RecipientError(f"{name}: cannot read: {e.strerror or e}") from None
    with f:
        csv_file = layout.fmt == "csv"
        offset, line = (len(f.readline()), 2) if csv_file else (0, 1)
        start, count, quotes = offset, 0, 0
        for data in f:
            offset += len(data)
            count += 1
            if csv_file:
                quotes += data.count(b'"')
            if count >= size and not quotes & 1:
                yield Span(line, start, offset)
                start, line, count = offset, line + count, 0
        if count:
            yield Span(line, start, offset)


def read_span(
    path: Path, name: str, encoding: str, span: Span, hint: str = ""
) -> list[str]:
    """A span's lines, decoded; a decoding error names its line."""
    with path.open("rb") as f:
        f.seek(span.start)
        data = f.read(span.end - span.start)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = span.first_line + data.count(b"\n", 0, e.start)
        raise undecodable(name, line, encoding, e, hint) from None
    return list(io.StringIO(text, newline=""))  # lines as a text file gives them


def first_line(path: Path, name: str, encoding: str, hint: str = "") -> str:
    with open_text(path, name, encoding) as f:
        return next(_Lines(f, name, encoding, hint), "")


def check_decodes(path: Path, name: str, encoding: str, hint: str = "") -> None:
    """Raise the error reading would, when some byte of the file does not decode
    (block by block: memory stays flat)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        f = path.open("rb")
    except OSError as e:
        raise RecipientError(f"{name}: cannot read: {e.strerror or e}") from None
    with f:
        while data := f.read(DECODE_BLOCK):
            try:
                decoder.decode(data)
            except UnicodeDecodeError:
                break  # found again line by line, to name the line
        else:
            try:
                decoder.decode(b"", final=True)
                return
            except UnicodeDecodeError:
                pass
    line, error = locate_decode_error(path, encoding)
    assert error is not None
    raise undecodable(name, line, encoding, error, hint)


def undecodable(
    name: str, line: int, encoding: str, error: UnicodeDecodeError, hint: str = ""
) -> RecipientError:
    """``contacts.csv:57: not UTF-8 (byte 0xe9); HINT``: one line, the first bad
    byte. ``hint`` says what to do about a file that is not UTF-8."""
    bad = error.object[error.start : error.start + 1]
    byte = f" (byte 0x{bytes(bad).hex()})" if bad else ""
    utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
    what = "UTF-8" if utf8 else encoding
    advice = f"; {hint}" if hint and utf8 else ""
    return RecipientError(f"{name}:{line}: not {what}{byte}{advice}")


def plain_values(path: Path, name: str) -> Iterator[str]:
    """Values of a plain list: one a line, ``#`` starts a comment."""
    with open_text(path, name, "utf-8-sig") as f:
        for text in _Lines(f, name, "utf-8-sig", EXCLUDE_HINT):
            value = text.split("#", 1)[0].strip()
            if value:
                yield value


class _Lines:
    """A text file's lines; a decoding error names the line it is on."""

    def __init__(self, f: TextIO, name: str, encoding: str, hint: str = "") -> None:
        self.f, self.name, self.encoding, self.hint = f, name, encoding, hint

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return next(self.f)
        except UnicodeDecodeError as e:
            # text files decode in blocks, so the line is found again from the bytes
            line, found = locate_decode_error(Path(self.f.name), self.encoding)
            error = found or e
            raise undecodable(self.name, line, self.encoding, error, self.hint) from None


def locate_decode_error(
    path: Path, encoding: str
) -> tuple[int, UnicodeDecodeError | None]:
    """The first line of a file that does not decode, and the error there."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 0
    with path.open("rb") as f:
        for line, data in enumerate(f, 1):
            try:
                decoder.decode(data)
            except UnicodeDecodeError as e:
                return line, e
        try:
            decoder.decode(b"", final=True)  # a file cut inside a character
        except UnicodeDecodeError as e:
            return line, e
    return line, None
