"""``campaign-runner show``: one run, per step and, on request, per recipient."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from runner.audience.phones import mask_phone
from runner.commands.args import add_format, add_state
from runner.commands.output import emit, mode_of, open_journal
from runner.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID", help="a run id from 'history'")
    add_state(p)
    p.add_argument(
        "--recipients", action="store_true", help="one row per recipient and step"
    )
    p.add_argument(
        "--history",
        action="store_true",
        help="with --recipients: every earlier attempt of a message that was sent again",
    )
    p.add_argument(
        "--show-phones",
        action="store_true",
        help="full phone numbers instead of masked ones",
    )
    add_format(p, "json", "csv")


def main(args: argparse.Namespace) -> int:
    """Show one run: per-step summary and, with --recipients, who got what."""
    if args.history and not args.recipients:
        raise UsageError("--history goes with --recipients")
    return show_run(
        args.state,
        args.run_id,
        args.recipients,
        args.show_phones,
        args.format,
        sys.stdout,
        history=args.history,
    )


# never shown: idem_key holds the full number; seq is the row's internal order
HIDDEN = ("idem_key", "seq")


def show_run(
    state: str | None,
    run_id: str,
    recipients: bool,
    show_phones: bool,
    fmt: str,
    out: TextIO,
    *,
    history: bool = False,
) -> int:
    journal = open_journal(state)
    try:
        run = journal.get_run(run_id)
        if run is None:
            raise UsageError(f"no run {run_id!r} in {journal.where}")
        steps = journal.step_status(run_id)
        msgs = journal.messages_for(run_id) if recipients else []
        earlier = journal.history_for(run_id) if history else {}
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
    msgs = [_public(m, show_phones, earlier, history) for m in msgs]
    run = {**run, "mode": mode_of(run)}
    if fmt == "json":
        json.dump(
            {"run": run, "steps": step_rows, "messages": msgs}, out, indent=2, default=str
        )
        out.write("\n")
        return 0
    if recipients:
        if history:
            msgs = [row for m in msgs for row in _with_history(m)]
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
        emit(msgs, fmt, out, (["attempt"] if history else []) + cols)
        return 0
    if fmt == "csv":
        emit(step_rows, fmt, out, list(step_rows[0]) if step_rows else ["step"])
        return 0
    occurrence = f"  occurrence {run['occurrence']}" if run.get("occurrence") else ""
    out.write(
        f"run {run['id']}  campaign {run['campaign']}{occurrence}  {run['mode']}  "
        f"{run['status']}  started {run['started_at']}  "
        f"finished {run['finished_at'] or '-'}\n"
    )
    if run.get("control"):
        out.write(f"{run['control']} by {run['control_by']} at {run['control_at']}\n")
    emit(
        step_rows,
        fmt,
        out,
        ["step", "kind", "status", "sent", "failed", "unknown", "message"],
    )
    return 0


def _public(
    m: dict[str, Any],
    show_phones: bool,
    earlier: dict[tuple[str, str], list[dict[str, Any]]],
    history: bool,
) -> dict[str, Any]:
    row = {k: v for k, v in m.items() if k not in HIDDEN}
    if history:
        row["history"] = [
            {k: v for k, v in h.items() if k not in (*HIDDEN, "id", "run_id", "phone")}
            for h in earlier.get((m["step_id"], m["phone"]), [])
        ]
    if not show_phones:
        row["phone"] = mask_phone(m["phone"])
    return row


def _with_history(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Earlier attempts first (numbered from 1), then the message as it stands."""
    rows = [{**m, **h, "attempt": n} for n, h in enumerate(m.get("history", []), start=1)]
    rows.append({**m, "attempt": len(rows) + 1})
    return rows
