"""The problem collector and the value checks every section of a campaign shares.

Runs on data the schema may have rejected, so every access checks its type and
quietly skips what the schema already reported; a finding at or under a path
with a schema error is dropped, so one mistake gives one line.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from apscheduler.triggers.cron import CronTrigger

from runner.audience.phones import InvalidPhone, PhoneNormalizer
from runner.errors import Problem
from runner.loader import schema
from runner.loader.yamlload import Document, FieldPath, Pos
from runner.model.campaign import SandboxOptions, Schedule, Window
from runner.model.timeparse import Rate, parse_datetime, parse_duration, parse_rate

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
REGION_MISTAKES = {"UK": "GB", "EL": "GR"}  # common codes that are not ISO 3166


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones() | {"UTC"})


class Checker:
    """Collects problems for one campaign file while building its typed objects."""

    def __init__(
        self,
        path: Path,
        doc: Document,
        env: Mapping[str, str],
        require_env: bool,
        schema_errors: Iterable[FieldPath],
    ) -> None:
        self.path = path
        self.where = str(path)
        self.doc = doc
        self.env = env
        self.require_env = require_env
        self.bad = set(schema_errors)
        self.problems: list[Problem] = []
        self.tz: tzinfo = ZoneInfo("UTC")
        self.data: dict[str, Any] = doc.data

    # -- reporting -----------------------------------------------------------------

    def _shadowed(self, path: FieldPath) -> bool:
        return any(path[: len(b)] == b for b in self.bad)

    def error(
        self,
        path: FieldPath,
        message: str,
        *,
        at_key: bool = False,
        force: bool = False,
        severity: str = "error",
        pos: Pos | None = None,
        file: str | None = None,
    ) -> None:
        """Record a problem at ``path`` (its key when ``at_key``); a semantic
        finding where the schema already complained is dropped."""
        if not force and self._shadowed(path):
            return
        if pos is None:
            pos = self.doc.pos(path, key=at_key)
        self.problems.append(
            Problem(
                file or self.where,
                pos.line,
                pos.col,
                schema.field_path(path),
                message,
                severity,
            )
        )

    def warn(self, path: FieldPath, message: str) -> None:
        self.error(path, message, severity="warning")

    def sorted_problems(self) -> list[Problem]:
        return sorted(
            self.problems, key=lambda p: (p.path != self.where, p.path, p.line, p.col)
        )

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    # -- small parsers ---------------------------------------------------------------

    def duration(self, path: FieldPath, value: Any) -> timedelta | None:
        if value is None or isinstance(value, bool):
            return None
        if not isinstance(value, str | int | float):
            return None
        try:
            return parse_duration(value)
        except ValueError as e:
            self.error(path, str(e))
        except OverflowError:
            self.error(path, f"duration out of range: {value!r}")
        return None

    def seconds(self, path: FieldPath, value: Any, default: float) -> float:
        d = self.duration(path, value)
        return default if d is None else d.total_seconds()

    def datetime(self, path: FieldPath, value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        try:
            return parse_datetime(value, self.tz)
        except ValueError as e:
            self.error(path, str(e))
            return None

    def rate(self, path: FieldPath, value: Any) -> Rate | None:
        if not isinstance(value, str):
            return None
        try:
            return parse_rate(value)
        except ValueError as e:
            self.error(path, str(e))
            return None

    def relative_file(self, path: FieldPath, value: Any, what: str) -> Path | None:
        """A file named relative to the campaign file; it must exist."""
        if not isinstance(value, str) or not value:
            return None
        target = Path(value)
        with contextlib.suppress(RuntimeError):  # an unknown ~user: "not found"
            target = target.expanduser()
        if not target.is_absolute():
            target = self.path.parent / target
        if not target.is_file():
            state = "is a directory" if target.is_dir() else "not found"
            self.error(path, f"{what} {state}: {value!r} (relative to the campaign file)")
            return None
        return target.absolute()

    def finite(self, value: Any, path: FieldPath) -> None:
        """``.inf`` and ``.nan`` are YAML numbers but no sensible setting."""
        if isinstance(value, float) and not math.isfinite(value):
            self.error(path, "must be a finite number")
            self.bad.add(path)
        elif isinstance(value, dict):
            for k, v in value.items():
                self.finite(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.finite(v, (*path, i))

    def timezone(self, value: Any) -> tzinfo:
        if not isinstance(value, str):
            return ZoneInfo("UTC")
        if value not in _timezones():
            more = schema.hint(value, sorted(_timezones()))
            self.error(("timezone",), f"unknown time zone {value!r}.{more}".rstrip("."))
            return ZoneInfo("UTC")
        try:
            return ZoneInfo(value)
        except (KeyError, ValueError, OSError):
            self.error(("timezone",), f"unknown time zone {value!r}")
            return ZoneInfo("UTC")

    def region(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        regions = sorted(phonenumbers.SUPPORTED_REGIONS)
        if value not in regions:
            close = REGION_MISTAKES.get(value.upper())
            more = schema.hint(value, regions)
            if close:
                more = f" Perhaps you meant {close!r}?"
            msg = f"unknown region {value!r} (expected an ISO 3166-1 alpha-2 code)"
            self.error(("default_region",), f"{msg}.{more}" if more else msg)
            return None
        return value

    # -- schedule, sandbox, windows --------------------------------------------------

    def schedule(self, value: Any) -> Schedule | None:
        if not isinstance(value, dict):
            return None
        path: FieldPath = ("schedule",)
        cron = value.get("cron")
        if isinstance(cron, str):
            try:
                CronTrigger.from_crontab(cron, timezone=self.tz)
            except ValueError as e:
                self.error((*path, "cron"), f"invalid cron expression {cron!r}: {e}")
        grace = value.get("misfire_grace_time")
        at = self.datetime((*path, "at"), value.get("at"))
        if at is not None and at < datetime.now(UTC):
            self.warn(
                (*path, "at"),
                f"{value.get('at')} was {_ago(datetime.now(UTC) - at)} ago: the "
                "daemon skips a one-off start later than its misfire_grace_time "
                "(`campaign-runner run` sends it now)",
            )
        return Schedule(
            cron=cron if isinstance(cron, str) else None,
            at=at,
            misfire_grace_time=self.duration((*path, "misfire_grace_time"), grace),
            coalesce=bool(value.get("coalesce", True)),
        )

    def sandbox(self, value: Any, region: str | None = None) -> SandboxOptions:
        if not isinstance(value, dict):
            return SandboxOptions()
        path: FieldPath = ("sandbox",)
        normalise = PhoneNormalizer(region)

        def number(where: FieldPath, raw: str) -> str | None:
            try:
                return normalise(raw)
            except InvalidPhone as e:
                self.error(where, f"{raw!r} is not a phone number: {e}")
                return None

        replies = {}
        for raw, text in (value.get("replies") or {}).items():
            phone = number((*path, "replies", raw), str(raw))
            if phone is not None and isinstance(text, str):
                replies[phone] = text
        opted_out = []
        for i, raw in enumerate(value.get("opted_out") or []):
            phone = number((*path, "opted_out", i), str(raw))
            if phone is not None:
                opted_out.append(phone)
        faults = value.get("faults") or {}
        if isinstance(faults, dict):
            total = sum(v for v in faults.values() if isinstance(v, int | float))
            if total > 1:
                self.error((*path, "faults"), f"fault rates add up to {total:g}, over 1")
        credits = value.get("credits")
        return SandboxOptions(
            latency=self.seconds((*path, "latency"), value.get("latency"), 0.0),
            faults=dict(faults) if isinstance(faults, dict) else {},
            credits=float(credits) if isinstance(credits, int | float) else None,
            seed=value.get("seed") if isinstance(value.get("seed"), int) else None,
            replies=replies,
            opted_out=tuple(opted_out),
        )

    def window(self, path: FieldPath, value: Any) -> Window | None:
        hours = value.get("hours") if isinstance(value, dict) else value
        days_spec = value.get("days", DAYS) if isinstance(value, dict) else DAYS
        if not isinstance(hours, str) or "-" not in hours:
            return None
        hours_path = (*path, "hours") if isinstance(value, dict) else path
        start_text, _, end_text = hours.partition("-")
        start = self.clock(hours_path, start_text)
        end = self.clock(hours_path, end_text)
        if start is None or end is None:
            return None
        if start == end:
            self.error(hours_path, f"the window {hours!r} opens and closes at once")
            return None
        days = tuple(DAYS.index(d) for d in days_spec if d in DAYS)
        spec = value if isinstance(value, dict) else {}
        field = spec.get("timezone_field")
        if spec.get("timezone") != "recipient":
            for key in ("timezone_field", "several_zones"):
                if key in spec:
                    self.error((*path, key), f"{key} needs timezone: recipient")
        return Window(
            start=start,
            end=end,
            days=tuple(sorted(set(days))),
            per_recipient=spec.get("timezone") == "recipient",
            zone_field=field if isinstance(field, str) else None,
            several_zones=str(spec.get("several_zones", "campaign")),
        )

    def clock(self, path: FieldPath, text: str) -> time | None:
        h, _, m = text.strip().partition(":")
        try:
            return time(int(h), int(m))
        except ValueError:
            self.error(path, f"not a time of day: {text.strip()!r} (expected HH:MM)")
            return None


def _ago(delta: timedelta) -> str:
    """``4 days``, ``3 hours``, ``12 minutes``: how long ago, in words."""
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
