"""One recipient as the rest of the program sees it, and the counts of a read.

Kept apart from reading (``recipients``) so that templates, rendering and the
engine can name a recipient without importing the reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

MAX_LISTED = 100  # invalid rows kept for the summary; the count goes on


@dataclass(frozen=True, slots=True)
class Recipient:
    phone: str  # E.164 with +
    fields: Mapping[str, Any]  # every column/field as read, the phone one included
    row: int  # 1-based data row in its source (a CSV header is not a data row)
    source: str  # the file as named in the campaign, or "inline"
    line: int = 0  # the file line the row starts on (0 for inline)

    @property
    def location(self) -> str:
        """``recipients.csv:13`` (file line) or ``inline row 3``."""
        if self.line:
            return f"{self.source}:{self.line}"
        return f"{self.source} row {self.row}"

    @property
    def key(self) -> int:
        """The number as an int, for sets of numbers."""
        return int(self.phone[1:])


class InvalidRow(NamedTuple):
    source: str
    row: int
    phone: str  # masked
    reason: str
    line: int = 0
    given: str = ""  # the number as the row has it, unmasked (for the journal)

    @property
    def location(self) -> str:
        return (
            f"{self.source}:{self.line}" if self.line else f"{self.source} row {self.row}"
        )

    @property
    def at(self) -> tuple[str, int, int]:
        """(source, row, line)."""
        return self.source, self.row, self.line

    def format(self) -> str:
        phone = f" {self.phone}" if self.phone else ""
        return f"{self.location}:{phone} {self.reason}"


class Skipped(NamedTuple):
    """A row that is not among the recipients, and why (the journal keeps it)."""

    reason: str  # invalid | duplicate | excluded | filtered_out
    source: str
    row: int
    line: int
    given: str  # the number as the row has it
    phone: str | None  # E.164, when it could be read
    detail: str


@dataclass
class RecipientStats:
    """Counts for the summary and the journal; ``invalid_rows`` lists the first few."""

    read: int = 0
    invalid: int = 0
    duplicates: int = 0
    excluded: int = 0
    filtered_out: int = 0
    accepted: int = 0
    invalid_rows: list[InvalidRow] = field(default_factory=list)
    # told of every row left out, when set (the planner records them)
    on_skip: Callable[[Skipped], None] | None = None

    def add_invalid(self, row: InvalidRow) -> None:
        self.invalid += 1
        if len(self.invalid_rows) < MAX_LISTED:
            self.invalid_rows.append(row)

    def as_dict(self) -> dict[str, int]:
        keys = ("read", "invalid", "duplicates", "excluded", "filtered_out", "accepted")
        return {k: getattr(self, k) for k in keys}
