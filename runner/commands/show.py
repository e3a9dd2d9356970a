"""``campaign-runner show``: one run, per step and, on request, per recipient."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from runner.audience.phones import mask_phone
from runner.commands.args import add_format, add_state
from runner.commands.output import emit, open_journal
from runner.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID", help="a run id from 'history'")
    add_state(p)
    p.add_argument(
        "--recipients", action="store_true", help="one row per recipient and step"
    )
    p.add_argument(
        "--show-phones",
        action="store_true",
        help="full phone numbers instead of masked ones",
    )
    add_format(p, "json", "csv")


def main(args: argparse.Namespace) -> int:
    """Show one run: per-step summary and, with --recipients, who got what."""
    return show_run(
        args.state,
        args.run_id,
        args.recipients,
        args.show_phones,
        args.format,
        sys.stdout,
    )


def show_run(
    state: str | None,
    run_id: str,
    recipients: bool,
    show_phones: bool,
    fmt: str,
    out: TextIO,
) -> int:
    journal = open_journal(state)
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
            m["phone"] = mask_phone(m["phone"])
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
        emit(msgs, fmt, out, cols)
        return 0
    if fmt == "csv":
        emit(step_rows, fmt, out, list(step_rows[0]) if step_rows else ["step"])
        return 0
    out.write(
        f"run {run['id']}  campaign {run['campaign']}  {run['status']}  "
        f"started {run['started_at']}  finished {run['finished_at'] or '-'}\n"
    )
    emit(
        step_rows,
        fmt,
        out,
        ["step", "kind", "status", "sent", "failed", "unknown", "message"],
    )
    return 0
