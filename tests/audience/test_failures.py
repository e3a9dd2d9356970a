"""Render failures grouped by problem and variant: counts, order, the cap."""

from __future__ import annotations

import json

import pytest

from runner.audience import failures
from runner.audience.failures import Failures, Unrendered


def test_groups_count_keep_the_first_and_rank_the_commonest_first() -> None:
    f = Failures()
    f.add(Unrendered("over max_segments 2", "es", "c.csv:3"))
    for line in range(10, 13):
        f.add(Unrendered("undefined variable 'nmae'", "en", f"c.csv:{line}"))
    f.add(Unrendered("undefined variable 'nmae'", "es", "c.csv:20"))  # another variant
    f.add(Unrendered("no variant for lang='fr' and no default", None, "inline row 4"))
    assert f.total == 6
    assert f.lines() == [
        "undefined variable 'nmae' in variant 'en': 3 recipients, first at c.csv:10",
        "over max_segments 2 in variant 'es': 1 recipient, first at c.csv:3",
        "undefined variable 'nmae' in variant 'es': 1 recipient, first at c.csv:20",
        "no variant for lang='fr' and no default: 1 recipient, first at inline row 4",
    ]
    assert f.lines(cap=2)[2:] == ["... and 2 recipients with 2 other problems"]
    again = Failures.from_json(json.loads(json.dumps(f.as_json())))
    assert again.lines() == f.lines() and again.total == 6


def test_beyond_the_groups_kept_recipients_are_still_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(failures, "MAX_KEPT", 3)
    f = Failures()
    for i in range(5):
        f.add(Unrendered(f"ValueError: bad {i}", None, f"c.csv:{i + 2}"), count=2)
    assert f.total == 10 and len(f.groups) == 3
    assert f.lines(cap=2)[-1] == "... and 6 recipients with other problems"
