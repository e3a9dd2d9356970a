"""Messages that cannot be rendered, grouped by what went wrong.

One mistake in a template fails every recipient it reaches, so a list of one
line per recipient says the same thing a thousand times. A group is one
(problem, variant) pair with how many recipients it hits and where the first
of them is: ``undefined variable 'nmae' in variant 'en': 793 recipients, first
at contacts.csv:12``. Preview and the send step's planning both group this way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

from runner.errors import TemplateError

MAX_GROUPS = 10  # listed; the others are counted in one line
MAX_KEPT = 1000  # distinct groups remembered (a data error may differ per row)


class Unrendered(NamedTuple):
    """Why one recipient's message cannot be rendered, and where they are."""

    issue: str  # what went wrong: "undefined variable 'nmae'"
    variant: str | None
    where: str  # "contacts.csv:12", "inline row 3"

    @classmethod
    def of(cls, error: TemplateError) -> Unrendered:
        return cls(error.issue, error.variant, error.where)


@dataclass
class Group:
    issue: str
    variant: str | None
    count: int
    first: str  # where the first recipient it hits is

    def format(self) -> str:
        variant = f" in variant {self.variant!r}" if self.variant else ""
        who = "recipient" if self.count == 1 else "recipients"
        first = f", first at {self.first}" if self.first else ""
        return f"{self.issue}{variant}: {self.count:,} {who}{first}"


class Failures:
    """Render failures grouped by (problem, variant), in the order first seen."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str | None], Group] = {}
        self.others = 0  # recipients of groups beyond MAX_KEPT

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups.values()) + self.others

    def add(self, failure: Unrendered, count: int = 1) -> None:
        key = (failure.issue, failure.variant)
        group = self.groups.get(key)
        if group is not None:
            group.count += count
        elif len(self.groups) < MAX_KEPT:
            self.groups[key] = Group(failure.issue, failure.variant, count, failure.where)
        else:
            self.others += count

    def lines(self, cap: int = MAX_GROUPS) -> list[str]:
        """The commonest groups first (ties in the order first seen), at most
        ``cap`` of them, and one line counting the rest."""
        ranked = sorted(self.groups.values(), key=lambda g: -g.count)  # stable
        lines = [g.format() for g in ranked[:cap]]
        rest = ranked[cap:]
        more = sum(g.count for g in rest) + self.others
        if more:
            counted = rest and not self.others
            problems = f"{len(rest):,} other problems" if counted else "other problems"
            lines.append(f"... and {more:,} recipients with {problems}")
        return lines

    def as_json(self) -> dict[str, Any]:
        """For the step's detail in the journal (a resumed step shows it again)."""
        groups = [dataclasses.asdict(g) for g in self.groups.values()]
        return {"groups": groups, "others": self.others}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failures:
        failures = cls()
        for g in data.get("groups", []):
            group = Group(g["issue"], g["variant"], int(g["count"]), g["first"])
            failures.groups[(group.issue, group.variant)] = group
        failures.others = int(data.get("others", 0))
        return failures
