"""Listings for people (aligned columns) or machines (JSON, CSV), the zone their
times are shown in, and the journal a read-only command opens."""

from __future__ import annotations

import contextlib
import csv
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import tzlocal

from runner.errors import UsageError
from runner.journal.journal import Journal
from runner.journal.where import locate


def open_journal(state: str | None) -> Journal:
    where = locate(state)
    if not where.exists():
        raise UsageError(f"no journal at {where} (nothing has run yet, or pass --state)")
    return Journal(where)


def emit(rows: list[dict[str, Any]], fmt: str, out: TextIO, columns: list[str]) -> None:
    if fmt == "json":
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
    elif fmt == "csv":
        w = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    else:
        widths = {
            c: max([len(c), *(len(str(r.get(c, "") or "")) for r in rows)])
            for c in columns
        }
        out.write("  ".join(c.ljust(widths[c]) for c in columns).rstrip() + "\n")
        for r in rows:
            out.write(
                "  ".join(
                    str(r.get(c, "") or "").ljust(widths[c]) for c in columns
                ).rstrip()
                + "\n"
            )


EXCERPT = 48  # characters of a message's text in a table


def excerpt(text: str, width: int = EXCERPT) -> str:
    """The start of a text on one line, for a table."""
    flat = text.replace("\r", "").replace("\n", " ⏎ ")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# columns of ``runs`` stored as JSON text, shown as the objects they hold
RUN_JSON = ("options", "fingerprint")


def run_record(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run as machines read it: its JSON columns parsed, its mode in words."""
    row = dict(run)
    for key in RUN_JSON:
        if isinstance(row.get(key), str):
            with contextlib.suppress(ValueError):  # not JSON after all: as written
                row[key] = json.loads(row[key])
    row["mode"] = mode_of(run)
    return row


def reason_of(m: Mapping[str, Any]) -> str:
    """Why a message ended as it did, in one phrase (empty when nothing went wrong)."""
    kind, code, detail = m.get("error_kind"), m.get("error_code"), m.get("error_detail")
    if not kind:
        return ""
    said = detail or code or ""
    if code and detail and str(code) not in str(detail):
        said = f"{detail} ({code})"
    return f"{kind}: {said}" if said else str(kind)


def left_out_reason(r: Mapping[str, Any]) -> str:
    """Where a row a plan left out is, and why: ``contacts.csv:9: too short``."""
    where = (
        f"{r['source']}:{r['line']}"
        if r["line"]
        else f"{r['source']} row {r['source_row']}"
    )
    return f"{where}: {r['detail']}" if r["detail"] else where


def mode_of(run: Mapping[str, Any]) -> str:
    """``rehearsal (sandbox at URL)``, ``test send`` or ``real``, as people read it."""
    if run.get("mode") == "test":
        return "test send" + (" (sandbox)" if run.get("sandbox") else "")
    if run.get("mode") == "sandbox":
        where = f" at {run['sandbox']}" if run.get("sandbox") else ""
        return f"rehearsal (sandbox{where})"
    return "real"


@dataclass(frozen=True)
class Zone:
    """The one zone a listing shows its times in, and its name for the header."""

    tz: tzinfo
    name: str

    @classmethod
    def chosen(cls, utc: bool) -> Zone:
        """UTC, or the machine's zone by its IANA name (``$TZ``, /etc/localtime)."""
        if utc:
            return cls(UTC, "UTC")
        try:
            with warnings.catch_warnings():  # tzlocal warns of odd set-ups
                warnings.simplefilter("ignore")
                name = tzlocal.get_localzone_name()
            if name:
                return cls(ZoneInfo(name), name)
        except (LookupError, ValueError, OSError):
            pass
        local = datetime.now().astimezone().tzinfo or UTC
        return cls(local, str(local))

    def show(self, value: str | datetime | None) -> str:
        """``2026-12-04 19:12:06`` in this zone; ``-`` for none; unreadable as is."""
        if value is None or value == "":
            return "-"
        if isinstance(value, str):
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                return value
        else:
            when = value
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # the journal writes UTC
        return f"{when.astimezone(self.tz):%Y-%m-%d %H:%M:%S}"
