"""``campaign-runner show``: one run, per step and, on request, per recipient."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from runner.audience.phones import mask_phone
from runner.commands.args import add_format, add_state
from runner.commands.output import (
    emit,
    excerpt,
    left_out_reason,
    open_journal,
    reason_of,
    run_record,
)
from runner.errors import UsageError
from runner.journal.journal import Journal
from runner.journal.tables import MESSAGE_STATUSES, SKIPPED_REASONS

# what --status takes: a message's status, or why a row got no message
STATUSES = (*MESSAGE_STATUSES, *SKIPPED_REASONS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_id",
        metavar="RUN",
        help="a run id from 'history', 'last' (the latest run), or a campaign "
        "name (its latest run)",
    )
    add_state(p)
    p.add_argument(
        "--recipients", action="store_true", help="one row per recipient and step"
    )
    p.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only recipients with this status (implies --recipients; repeat it or "
        "give a comma list): " + ", ".join(STATUSES),
    )
    p.add_argument("--step", metavar="ID", help="only this step")
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
    """Show one run: per-step times and counts and, with --recipients, who got
    what and why not."""
    statuses = parse_statuses(args.status)
    recipients = args.recipients or bool(statuses)
    if args.history and not recipients:
        raise UsageError("--history goes with --recipients")
    return show_run(
        args.state,
        args.run_id,
        recipients,
        args.show_phones,
        args.format,
        sys.stdout,
        history=args.history,
        statuses=statuses,
        step=args.step,
    )


def parse_statuses(given: Sequence[str] | None) -> list[str]:
    """``--status failed --status unknown`` or ``--status failed,unknown``."""
    found = [s.strip() for g in given or () for s in g.split(",") if s.strip()]
    for s in found:
        if s not in STATUSES:
            raise UsageError(
                f"--status {s!r}: not a status (one of {', '.join(STATUSES)})"
            )
    return found


# never shown: seq is the row's internal order
HIDDEN = ("seq",)
HISTORY_HIDDEN = (*HIDDEN, "id", "run_id", "phone")
STEP_COLUMNS = [
    "step",
    "kind",
    "status",
    "started_at",
    "finished_at",
    "sent",
    "failed",
    "unknown",
    "message",
]
RECIPIENT_TEXT = [
    "step_id",
    "phone",
    "status",
    "reason",
    "variant",
    "provider",
    "attempts",
    "segments",
    "sent_at",
    "delivery_status",
    "text",
]
RECIPIENT_CSV = [
    "step_id",
    "phone",
    "status",
    "reason",
    "variant",
    "provider",
    "provider_message_id",
    "attempts",
    "segments",
    "error_kind",
    "error_code",
    "sent_at",
    "delivery_status",
    "delivery_code",
    "source_row",
    "text",
]


def find_run(journal: Journal, wanted: str, *, tests: bool = True) -> dict[str, Any]:
    """A run by id, ``last``, or a campaign's name (its latest run; a test send
    counts unless ``tests`` is False)."""
    run = journal.get_run(wanted)
    if run is None:
        run = journal.latest_run(None if wanted == "last" else wanted, tests=tests)
    if run is None:
        what = "no run yet" if wanted == "last" else f"no run or campaign {wanted!r}"
        raise UsageError(f"{what} in {journal.where} (see 'campaign-runner history')")
    return dict(run)


def show_run(
    state: str | None,
    run_id: str,
    recipients: bool,
    show_phones: bool,
    fmt: str,
    out: TextIO,
    *,
    history: bool = False,
    statuses: Sequence[str] = (),
    step: str | None = None,
) -> int:
    journal = open_journal(state)
    try:
        run = find_run(journal, run_id)
        run_id = run["id"]
        steps = journal.step_status(run_id)
        if step is not None and step not in steps:
            known = ", ".join(steps) or "none"
            raise UsageError(f"run {run_id} has no step {step!r} (steps: {known})")
        if step is not None:
            steps = {step: steps[step]}
        wanted = [s for s in statuses if s in MESSAGE_STATUSES]
        left_out = [s for s in statuses if s in SKIPPED_REASONS]
        msgs: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        if recipients and (wanted or not left_out):
            msgs = journal.messages_for(run_id, step, wanted)
        if recipients and (left_out or not wanted):
            skipped = journal.skipped_for(run_id, step, left_out)
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
            "counts": counts[sid],
            "detail": s["detail"],
        }
        for sid, s in steps.items()
    ]
    msgs = [_public(m, show_phones, earlier, history) for m in msgs]
    left = [_left_out(r, show_phones) for r in skipped]
    record = run_record(run)
    if fmt == "json":
        json.dump(
            {"run": record, "steps": step_rows, "messages": msgs, "skipped": left},
            out,
            indent=2,
            default=str,
        )
        out.write("\n")
        return 0
    if recipients:
        if history:
            msgs = [row for m in msgs for row in _with_history(m)]
        rows = msgs + left
        if fmt == "text":
            rows = [{**r, "text": excerpt(r.get("text") or "")} for r in rows]
        cols = RECIPIENT_TEXT if fmt == "text" else RECIPIENT_CSV
        emit(rows, fmt, out, (["attempt"] if history else []) + cols)
        return 0
    if fmt == "csv":
        emit(step_rows, fmt, out, STEP_COLUMNS)
        return 0
    occurrence = f"  occurrence {run['occurrence']}" if run.get("occurrence") else ""
    out.write(
        f"run {run['id']}  campaign {run['campaign']}{occurrence}  {record['mode']}  "
        f"{run['status']}  started {run['started_at']}  "
        f"finished {run['finished_at'] or '-'}\n"
    )
    if run.get("control"):
        out.write(f"{run['control']} by {run['control_by']} at {run['control_at']}\n")
    emit(step_rows, fmt, out, STEP_COLUMNS)
    return 0


def _public(
    m: dict[str, Any],
    show_phones: bool,
    earlier: dict[tuple[str, str], list[dict[str, Any]]],
    history: bool,
) -> dict[str, Any]:
    row = {k: v for k, v in m.items() if k not in HIDDEN}
    row["reason"] = reason_of(m)
    if history:
        row["history"] = [
            {
                **{
                    k: v
                    for k, v in h.items()
                    if k not in (*HIDDEN, "id", "run_id", "phone")
                },
                "reason": reason_of(h),
                "resent": h["reason"],  # why it was sent again
            }
            for h in earlier.get((m["step_id"], m["phone"]), [])
        ]
    if not show_phones:
        row["phone"] = mask_phone(m["phone"])
    return row


def _left_out(r: Mapping[str, Any], show_phones: bool) -> dict[str, Any]:
    """A row the plan left out, in the shape of a message row: its status is why."""
    phone = r["phone"] or r["given"] or ""
    return {
        "step_id": r["step_id"],
        "phone": phone if show_phones else mask_phone(phone),
        "status": r["reason"],
        "reason": left_out_reason(r),
        "source": r["source"],
        "source_row": r["source_row"],
        "line": r["line"],
        "created_at": r["created_at"],
    }


def _with_history(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Earlier attempts first (numbered from 1), then the message as it stands."""
    rows = [{**m, **h, "attempt": n} for n, h in enumerate(m.get("history", []), start=1)]
    rows.append({**m, "attempt": len(rows) + 1})
    return rows
