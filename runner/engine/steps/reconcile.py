"""Settling ``unknown`` sends from the provider's own per-recipient report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from runner.engine.context import RunContext
from runner.engine.steps.reads import read_report
from runner.model.campaign import SendAction, Step
from runner.providers.base import Capability, ProviderCallError, ReportQuery, SentRecord


def reconcile_unknown(ctx: RunContext, step: Step) -> int:
    """Settle ``unknown`` messages from the provider's own per-recipient report.

    A number the report shows is ``sent``; when a complete pass over a
    per-recipient report (``per_recipient_report``) does not list the number, the
    call never took effect and the message goes back to ``queued``. Without such a report
    the messages stay ``unknown`` and are listed for the user. Only messages older
    than the provider's ``report_lag`` are judged, so a report that is merely late
    cannot cause a second send. Returns how many went back to ``queued``.
    """
    action = step.action
    assert isinstance(action, SendAction)
    unknown = ctx.journal.messages_for(ctx.run_id, step.id, ["unknown"])
    if not unknown or ctx.options.dry_run:
        return 0
    by_provider: dict[str, list[dict[str, Any]]] = {}
    for m in unknown:
        by_provider.setdefault(m["provider"], []).append(m)
    total_requeued = 0
    for name, all_rows in by_provider.items():
        provider = ctx.providers.get(name)
        if provider is None or Capability.REPORT not in provider.capabilities:
            continue
        if not getattr(provider, "per_recipient_report", False):
            continue
        lag = float(
            provider.options.get("report_lag", getattr(provider, "report_lag", 300.0))
        )
        cutoff = datetime.now(UTC) - timedelta(seconds=lag)
        called = {
            r["phone"]: datetime.fromisoformat(r["sent_at"] or r["created_at"])
            for r in all_rows
        }
        rows = [r for r in all_rows if called[r["phone"]] <= cutoff]
        if not rows:
            continue
        query = ReportQuery(
            since=min(called[r["phone"]] for r in rows) - timedelta(minutes=5),
            until=datetime.now(UTC),
            sent=[SentRecord(r["phone"], None, called[r["phone"]]) for r in rows],
            campaign_code=ctx.campaign.name,
        )
        try:
            report = read_report(ctx, name, provider, query)
        except ProviderCallError as e:
            ctx.log.emit(
                "reconcile.failed", ctx.run_id, step.id, provider=name, reason=str(e)
            )
            continue
        if report is None:  # no complete listing: judge nothing
            continue
        seen = {d.to: d for d in report.deliveries}
        settled = requeued = 0
        for r in rows:
            d = seen.get(r["phone"])
            if d is not None:
                ctx.journal.reconcile(
                    ctx.run_id,
                    step.id,
                    r["phone"],
                    "sent",
                    d.message_id,
                    "reconciled from the provider's report",
                )
                settled += 1
            else:
                ctx.journal.reconcile(
                    ctx.run_id,
                    step.id,
                    r["phone"],
                    "queued",
                    None,
                    "not in the provider's report: never sent",
                )
                requeued += 1
        ctx.log.emit(
            "reconcile.done",
            ctx.run_id,
            step.id,
            provider=name,
            sent=settled,
            requeued=requeued,
        )
        total_requeued += requeued
    return total_requeued
