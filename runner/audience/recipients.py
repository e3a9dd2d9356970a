"""Who gets the campaign: rows read as a stream, numbers normalised, filtered.

Per row: phone to E.164 (invalid: counted and listed, or an error with
``on_invalid: fail``) -> opt-out list -> duplicates (the first row of a number
wins) -> ``where``. Rows are screened a chunk at a time, so that the opt-out
list and the numbers already seen, kept as ints (``+34612345678`` ->
``34612345678``) in a :class:`NumberSet`, are looked up in batches; memory does
not grow with the number of recipients.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from runner.audience import sources
from runner.audience.numberset import Closes, NumberSet
from runner.audience.phones import InvalidPhone, PhoneNormalizer, mask_phone
from runner.audience.recipient import InvalidRow, Recipient, RecipientStats, Skipped
from runner.audience.sources import Row
from runner.audience.templates import Renderer
from runner.errors import RecipientError, TemplateError
from runner.model.campaign import Campaign, RecipientSource

CHUNK_ROWS = 2000  # rows screened together (one batch of lookups)


class Screen(Closes):
    """The checks of one row that do not depend on other rows (so that worker
    processes can run them): phone, opt-out list, ``where``."""

    def __init__(self, campaign: Campaign) -> None:
        src = campaign.recipients
        self.campaign = campaign
        self.normalise = PhoneNormalizer(campaign.default_region)
        self.source = "inline" if src.file is None else _display(campaign, self.path)
        self.phone_field = src.phone_field
        self.fail = src.on_invalid == "fail"
        self.excluded = self._exclusions()
        self.where = src.where
        self._renderer: Any = None

    @property
    def path(self) -> Path:
        file = self.campaign.recipients.file
        assert file is not None
        return file if file.is_absolute() else self.campaign.base_dir / file

    def read(self, row: Row) -> Recipient | InvalidRow:
        """The recipient with its number normalised, or why the row is invalid."""
        fields, number, line, error = row
        raw = "" if fields is None else fields.get(self.phone_field)
        try:
            if fields is None:
                raise InvalidPhone(error)
            if raw is None or raw == "":
                raise InvalidPhone(f"no {self.phone_field!r}")
            phone = self.normalise(raw if type(raw) is str else str(raw))
        except InvalidPhone as e:
            given = str(raw or "")
            bad = InvalidRow(self.source, number, mask_phone(given), str(e), line, given)
            if self.fail:
                raise RecipientError(f"{bad.format()} (on_invalid: fail)") from None
            return bad
        assert fields is not None
        return Recipient(phone, fields, number, self.source, line)

    def excluded_among(self, recipients: Sequence[Recipient]) -> list[bool]:
        """Whether an opt-out file lists each recipient's number."""
        if not self.excluded:
            return [False] * len(recipients)
        return self.excluded.contains([r.key for r in recipients])

    def close(self) -> None:
        """Remove the opt-out list's temporary file, if it has one."""
        self.excluded.close()

    def matches(self, recipient: Recipient) -> bool:
        """Whether ``where`` holds for the recipient (True without one)."""
        if not self.where:
            return True
        if self._renderer is None:
            self._renderer = Renderer(self.campaign)
        try:
            context = self._renderer.context(recipient)
            return bool(self._renderer.evaluate(self.where, context))
        except TemplateError as e:
            raise RecipientError(f"{recipient.location}: where: {e}") from None

    def layout(self) -> sources.Layout:
        src = self.campaign.recipients
        return sources.read_layout(
            self.path,
            self.source,
            self.encoding,
            self.fmt,
            src.delimiter,
            self.phone_field,
            self.hint,
        )

    @property
    def fmt(self) -> str:
        src = self.campaign.recipients
        jsonl = self.path.suffix.lower() in (".jsonl", ".ndjson")
        return src.format or ("jsonl" if jsonl else "csv")

    @property
    def encoding(self) -> str:
        return sources.codec(self.campaign.recipients.encoding, self.source)

    @property
    def hint(self) -> str:
        return latin1_hint(self.campaign.recipients)

    def rows(self) -> Iterator[Row]:
        """Every row of the source, streamed."""
        inline = self.campaign.recipients.inline
        if inline is not None:
            for i, fields in enumerate(inline, 1):
                yield Row(fields, i, 0)
            return
        if self.campaign.recipients.file is None:
            raise RecipientError(
                f"{self.campaign.path.name}: recipients: no file and no inline list"
            )
        yield from sources.rows(
            self.path, self.source, self.encoding, self.layout(), self.hint
        )

    def _exclusions(self) -> NumberSet:
        """Every opt-out number; values that are not phone numbers are ignored.

        A file is a plain list (one number a line, ``#`` comments) unless its suffix
        is .csv/.jsonl or its first line holds a delimiter: then the column named
        like the recipients' phone field (or ``phone``, or the only one) is read.
        """
        numbers = NumberSet()
        try:
            numbers.add(self._exclusion_keys())
        except BaseException:
            numbers.close()
            raise
        return numbers

    def _exclusion_keys(self) -> Iterator[int]:
        for path in self.campaign.recipients.exclude:
            full = path if path.is_absolute() else self.campaign.base_dir / path
            for raw in self._exclusion_values(full, _display(self.campaign, full)):
                try:
                    yield int(self.normalise(raw)[1:])
                except InvalidPhone:
                    continue

    def _exclusion_values(self, path: Path, name: str) -> Iterator[str]:
        suffix = path.suffix.lower()
        hint = sources.EXCLUDE_HINT
        first = sources.first_line(path, name, "utf-8-sig", hint)
        if suffix in (".jsonl", ".ndjson"):
            layout = sources.Layout("jsonl")
            column = self.phone_field
        elif suffix == ".csv" or (
            any(d in first for d in sources.DELIMITERS)
            and not first.lstrip().startswith("#")
        ):
            layout = sources.read_layout(path, name, "utf-8-sig", "csv", None, "", hint)
            found = [c for c in (self.phone_field, "phone") if c in layout.header]
            if not found and len(layout.header) == 1:
                found = [layout.header[0]]
            if not found:
                raise RecipientError(f"{name}:1: no {self.phone_field!r} column")
            column = found[0]
        else:
            yield from sources.plain_values(path, name)
            return
        for row in sources.rows(path, name, "utf-8-sig", layout, hint):
            if row.fields is not None and row.fields.get(column) not in (None, ""):
                yield str(row.fields[column])


def iter_recipients(
    campaign: Campaign, stats: RecipientStats | None = None
) -> Iterator[Recipient]:
    """Stream the campaign's recipients, normalised, deduplicated and filtered
    (each row left out told to ``stats.on_skip`` when it is set).

    Raises RecipientError (one line naming file and line) for an unreadable
    source, or for an invalid row when ``on_invalid: fail``.
    """
    stats = RecipientStats() if stats is None else stats
    with Screen(campaign) as screen, NumberSet() as seen:
        rows = screen.rows()
        while True:
            chunk, unreadable = _read_chunk(screen, rows)
            yield from _screen_chunk(screen, seen, chunk, stats)
            if unreadable is not None:
                raise unreadable
            if len(chunk) < CHUNK_ROWS:
                return


Read = Recipient | InvalidRow | Exception  # a row's error is raised in its turn


def _read_chunk(
    screen: Screen, rows: Iterator[Row]
) -> tuple[list[Read], Exception | None]:
    """The next rows, each read; and the error that stopped reading the source,
    to raise once the rows before it are screened."""
    chunk: list[Read] = []
    while len(chunk) < CHUNK_ROWS:
        try:
            row = next(rows, None)
        except Exception as e:
            return chunk, e
        if row is None:
            break
        try:
            chunk.append(screen.read(row))
        except Exception as e:  # on_invalid: fail
            chunk.append(e)
            break
    return chunk, None


def _screen_chunk(
    screen: Screen, seen: NumberSet, chunk: list[Read], stats: RecipientStats
) -> Iterator[Recipient]:
    """The chunk's rows in order: opt-out list, duplicates, then ``where``."""
    skip = stats.on_skip
    valid = [got for got in chunk if isinstance(got, Recipient)]
    excluded = screen.excluded_among(valid)
    kept = [r.key for r, out in zip(valid, excluded, strict=True) if not out]
    new = iter(seen.add_new(kept))
    opted_out = iter(excluded)
    for got in chunk:
        stats.read += 1
        if isinstance(got, Exception):
            raise got
        if isinstance(got, InvalidRow):
            stats.add_invalid(got)
            if skip is not None:
                skip(Skipped("invalid", *got.at, got.given, None, got.reason))
            continue
        if next(opted_out):
            stats.excluded += 1
            why = ("excluded", "on an opt-out list (recipients.exclude)")
        elif not next(new):
            stats.duplicates += 1
            why = ("duplicate", "an earlier row has the same number")
        elif screen.matches(got):
            stats.accepted += 1
            yield got
            continue
        else:
            stats.filtered_out += 1
            why = ("filtered_out", f"where: {screen.where}")
        if skip is not None:
            given = str(got.fields.get(screen.phone_field, ""))
            skip(Skipped(why[0], got.source, got.row, got.line, given, got.phone, why[1]))


def latin1_hint(source: RecipientSource) -> str:
    """What to do when the recipients file is not UTF-8: most such files are
    Latin-1 (a spreadsheet's export)."""
    if source.encoding:
        return "if the file is Latin-1, set encoding: latin-1 in recipients"
    return "if the file is Latin-1, add encoding: latin-1 to recipients"


def undecodable_files(campaign: Campaign) -> Iterator[tuple[int | None, RecipientError]]:
    """The campaign's recipients file (None) and opt-out lists (their index) that
    do not decode, each with the error reading it would raise. Every byte is
    read, a block at a time."""
    src = campaign.recipients
    files: list[tuple[int | None, Path, str, str]] = []
    if src.file is not None:
        encoding = sources.codec(src.encoding, str(src.file))
        files.append((None, src.file, encoding, latin1_hint(src)))
    for i, path in enumerate(src.exclude):
        files.append((i, path, "utf-8-sig", sources.EXCLUDE_HINT))
    for which, path, encoding, hint in files:
        full = path if path.is_absolute() else campaign.base_dir / path
        try:
            sources.check_decodes(full, _display(campaign, full), encoding, hint)
        except RecipientError as e:
            yield which, e


def _display(campaign: Campaign, path: Path) -> str:
    """A path relative to the campaign's folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(campaign.base_dir.resolve()))
    except (ValueError, OSError):
        return str(path)
