"""Settling ``unknown`` sends from the provider's own per-recipient report.

A number the report lists is ``sent``; when a complete pass over a
per-recipient report (``per_recipient_report``) does not list it, the call never
took effect and the message is queued again (its unknown outcome kept in its
history). Only messages older than the provider's ``report_lag`` are judged, so
a report that is merely late cannot cause a second send; the settlement says
how long to wait for the others. Without such a report nothing can be settled:
the messages stay ``unknown`` and the step says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runner.engine.context import RunContext
from runner.engine.reads import read_report
from runner.model.campaign import Step
from runner.providers.base import (
    Capability,
    Provider,
    ProviderCallError,
    ReportQuery,
    SentRecord,
)

DEFAULT_LAG = 300.0  # seconds, when a provider names none


@dataclass
class Settlement:
    """What one pass over the providers' reports settled, and what is left."""

    sent: int = 0  # listed: it was sent
    requeued: int = 0  # absent from a complete listing: never sent, queued again
    young: int = 0  # sent too recently to judge
    wait: float = 0.0  # seconds until the youngest of those can be judged
    unsettleable: dict[str, int] = field(default_factory=dict)  # provider -> count
    problems: list[str] = field(default_factory=list)  # reports that could not be read

    @property
    def progress(self) -> bool:
        return bool(self.sent or self.requeued)


def report_lag(provider: Provider) -> float:
    return float(
        provider.options.get("report_lag", getattr(provider, "report_lag", DEFAULT_LAG))
    )


def settles(provider: Provider | None) -> bool:
    """Whether unknown sends through ``provider`` can be settled from its report."""
    return (
        provider is not None
        and Capability.REPORT in provider.capabilities
        and bool(getattr(provider, "per_recipient_report", False))
    )


def reconcile_unknown(ctx: RunContext, step: Step) -> Settlement:
    """One pass over the step's ``unknown`` messages (see the module docstring)."""
    done = Settlement()
    unknown = ctx.journal.messages_for(ctx.run_id, step.id, ["unknown"])
    if not unknown or ctx.options.dry_run:
        return done
    by_provider: dict[str, list[dict[str, Any]]] = {}
    for m in unknown:
        by_provider.setdefault(m["provider"], []).append(m)
    now = datetime.now(UTC)
    for name, all_rows in by_provider.items():
        provider = ctx.providers.get(name)
        if provider is None or not settles(provider):
            done.unsettleable[name] = len(all_rows)
            continue
        lag = timedelta(seconds=report_lag(provider))
        called = {
            r["phone"]: datetime.fromisoformat(r["sent_at"] or r["created_at"])
            for r in all_rows
        }
        rows = [r for r in all_rows if called[r["phone"]] + lag <= now]
        young = [called[r["phone"]] for r in all_rows if called[r["phone"]] + lag > now]
        if young:
            done.young += len(young)
            done.wait = max(done.wait, (max(young) + lag - now).total_seconds())
        if rows:
            _settle(ctx, step, name, provider, rows, called, done)
    return done


def _settle(
    ctx: RunContext,
    step: Step,
    name: str,
    provider: Provider,
    rows: list[dict[str, Any]],
    called: dict[str, datetime],
    done: Settlement,
) -> None:
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
        done.problems.append(f"{name}'s report could not be read ({e.error})")
        return
    if report is None:  # no complete listing: judge nothing
        done.problems.append(f"{name}'s report did not come to an end")
        return
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
    done.sent += settled
    done.requeued += requeued
