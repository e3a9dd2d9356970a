"""Durations (``30s``, ``15m``), rates (``30/s``) and datetimes from campaign files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h|d)\s*$")


def parse_duration(text: str | int | float) -> timedelta:
    """``'30s'`` -> 30 seconds. Bare numbers are seconds. Raises ValueError."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative: {text!r}")
        return timedelta(seconds=text)
    m = _DURATION.match(text)
    if not m:
        raise ValueError(
            f"not a duration: {text!r} "
            "(expected a number and a unit: 500ms, 30s, 15m, 2h, 1d)"
        )
    return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def format_duration(delta: timedelta) -> str:
    """A duration as a campaign file writes it: ``1h``, ``90s``, ``500ms``."""
    seconds = delta.total_seconds()
    for unit in ("d", "h", "m", "s"):
        n = seconds / _UNIT_SECONDS[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


@dataclass(frozen=True)
class Rate:
    """A ceiling of ``count`` calls per ``per_seconds`` seconds."""

    count: float
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}[self.per_seconds]
        return f"{self.count:g}/{unit}"


def parse_rate(text: str) -> Rate:
    """``'30/s'`` -> Rate(30, 1). Raises ValueError."""
    m = _RATE.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"not a rate: {text!r} (expected e.g. 30/s, 1000/m, 1200/h)")
    return Rate(float(m.group(1)), _UNIT_SECONDS[m.group(2)])


_CAP = re.compile(r"^\s*([1-9]\d*)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h|d)\s*$")


def parse_cap(text: str) -> tuple[int, timedelta]:
    """``'1/24h'`` -> (1, 24 hours); ``'3/d'`` -> (3, 1 day). Raises ValueError."""
    m = _CAP.match(text)
    if not m:
        raise ValueError(f"not a frequency cap: {text!r} (expected e.g. 1/24h, 3/7d)")
    amount = float(m.group(2) or 1)
    if amount <= 0:
        raise ValueError(f"not a frequency cap: {text!r} (the window must be > 0)")
    return int(m.group(1)), timedelta(seconds=amount * _UNIT_SECONDS[m.group(3)])


def parse_datetime(text: str, tz: tzinfo) -> datetime:
    """ISO 8601 datetime; a naive one is read in the campaign timezone ``tz``."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a datetime: {text!r} (expected ISO 8601, e.g. 2026-12-01T09:30:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value
