"""Planning a send: every rendered message recorded ``queued`` before any call.

A recipient whose template failed is recorded ``failed`` at once and never
sent. Planning is idempotent, so a resumed step plans only what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.journal.journal import Journal
from runner.journal.writer import Planned

PLAN_BATCH = 2000


def plan(
    journal: Journal,
    run_id: str,
    step_id: str,
    provider: str,
    messages: Iterable[tuple[str, int | None, str | None, int, str | None]],
) -> int:
    """Record ``(phone, row, text, segments, error)`` tuples not yet in the journal.

    A tuple with an error (the template failed for that recipient) is recorded
    ``failed`` at once: nothing will be sent to it. Returns how many were added.
    Idempotent: a resumed plan skips phones already recorded for the step.
    """
    known = journal.message_states(run_id, step_id)
    seq = journal.max_seq(run_id, step_id)
    batch: list[Planned] = []
    added = 0
    for phone, row, text, segments, error in messages:
        if phone in known:
            continue
        known[phone] = "queued"
        seq += 1
        batch.append(
            Planned(
                run_id,
                step_id,
                phone,
                seq,
                provider,
                text or "",
                segments,
                row,
                status="failed" if error else "queued",
                error_kind="template" if error else None,
                error_detail=error,
            )
        )
        if len(batch) >= PLAN_BATCH:
            # inserted by the writer thread while the next batch renders
            journal.writer.plan(batch, wait=False)
            added += len(batch)
            batch = []
    if batch:
        journal.writer.plan(batch, wait=False)
        added += len(batch)
    journal.writer.flush()  # every row committed (or the error raised) before a call
    return added
