"""``history`` and ``show``: read the journal and print it for people or machines."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TextIO

from runner.errors import UsageError
from runner.journal.eventlog import mask
from runner.journal.store import Journal, default_path


def _open(state: str | None) -> Journal:
    path = Path(state) if state else default_path()
    if not path.exists():
        raise UsageError(f"no journal at {path} (nothing has run yet, or pass --state)")
    return Journal(path)


def _emit(rows: list[dict[str, Any]], fmt: str, out: TextIO, columns: list[str]) -> None:
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


def history(
    state: str | None, name: str | None, limit: int, fmt: str, out: TextIO
) -> int:
    journal = _open(state)
    try:
        runs = journal.list_runs(name, limit)
    finally:
        journal.close()
    rows = []
    for r in runs:
        c = r.pop("counts")
        rows.append(
            {**r, **{k: c.get(k, 0) for k in ("sent", "failed", "unknown", "queued")}}
        )
    cols = [
        "id",
        "campaign",
        "status",
        "started_at",
        "finished_at",
        "sent",
        "failed",
        "unknown",
        "queued",
    ]
    if fmt == "text" and not rows:
        out.write("no runs\n")
        return 0
    _emit(rows, fmt, out, cols)
    return 0


def show_run(
    state: str | None,
    run_id: str,
    recipients: bool,
    show_phones: bool,
    fmt: str,
    out: TextIO,
) -> int:
    journal = _open(state)
    try:
        run = journal.get_run(run_id)
        if run is None:
            raise UsageError(f"no run {run_id!r} in {journal.path}")
        steps = journal.step_status(run_id)
        msgs = journal.messages_for(run_id) if recipients else []
        counts = {sid: journal.message_counts(run_id, sid) for sid in steps}
    finally:
        journal.close()
    step_rows = [
        {
            "step": sid,
            "kind": s["kind"],
            "status": s["status"],
            "started_at": s["started_at"],
            "finished_at": s["finished_at"],
            "message": s["detail"].get("message", ""),
            **{k: counts[sid].get(k, 0) for k in ("sent", "failed", "unknown")},
        }
        for sid, s in steps.items()
    ]
    for m in msgs:
        if not show_phones:
            m["phone"] = mask(m["phone"])
    if fmt == "json":
        json.dump(
            {"run": run, "steps": step_rows, "messages": msgs}, out, indent=2, default=str
        )
        out.write("\n")
        return 0
    if recipients:
        cols = [
            "step_id",
            "phone",
            "status",
            "provider",
            "provider_message_id",
            "attempts",
            "segments",
            "error_kind",
            "error_code",
            "sent_at",
            "delivery_status",
            "delivery_code",
        ]
        _emit(msgs, fmt, out, cols)
        return 0
    if fmt == "csv":
        _emit(step_rows, fmt, out, list(step_rows[0]) if step_rows else ["step"])
        return 0
    out.write(
        f"run {run['id']}  campaign {run['campaign']}  {run['status']}  "
        f"started {run['started_at']}  finished {run['finished_at'] or '-'}\n"
    )
    _emit(
        step_rows,
        fmt,
        out,
        ["step", "kind", "status", "sent", "failed", "unknown", "message"],
    )
    return 0
