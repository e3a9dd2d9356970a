"""Listings for people (aligned columns) or machines (JSON, CSV), and the journal
a read-only command opens."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from typing import Any, TextIO

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


def mode_of(run: Mapping[str, Any]) -> str:
    """``rehearsal (sandbox at URL)``, ``test send`` or ``real``, as people read it."""
    if run.get("mode") == "test":
        return "test send" + (" (sandbox)" if run.get("sandbox") else "")
    if run.get("mode") == "sandbox":
        where = f" at {run['sandbox']}" if run.get("sandbox") else ""
        return f"rehearsal (sandbox{where})"
    return "real"
