"""The check_report step: poll a provider's report, record it, check ``expect:``."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from runner.engine.context import RunContext, StepResult
from runner.engine.holds import learn_stops
from runner.engine.reads import retry_read, step_result
from runner.model.campaign import CheckReportAction, Expect, Step
from runner.model.timeparse import format_duration
from runner.providers.base import (
    Delivery,
    DeliveryStatus,
    ProviderCallError,
    ReportQuery,
    SentRecord,
)


def check_report(ctx: RunContext, step: Step) -> StepResult:
    action = step.action
    assert isinstance(action, CheckReportAction)
    provider = ctx.providers[action.provider]
    if ctx.options.dry_run:
        return step_result("succeeded", "dry run: report not fetched")
    send_state = ctx.journal.step_status(ctx.run_id).get(action.for_step, {})
    since = (
        datetime.fromisoformat(send_state["started_at"])
        if send_state.get("started_at")
        else datetime.now(UTC) - timedelta(days=1)
    )
    until = (
        datetime.fromisoformat(send_state["finished_at"])
        if send_state.get("finished_at")
        else datetime.now(UTC)
    )
    rows = ctx.journal.messages_for(ctx.run_id, action.for_step)
    sent = [
        SentRecord(
            r["phone"],
            r["provider_message_id"],
            datetime.fromisoformat(r["sent_at"]) if r["sent_at"] else since,
        )
        for r in rows
        if r["status"] == "sent" and r["provider"] == action.provider
    ]
    send_failed = sum(1 for r in rows if r["status"] == "failed")
    # the step's own figure: every message it sent, through whichever provider
    sent_total = sum(1 for r in rows if r["status"] == "sent")
    token = _callback(ctx, step, action)
    options = dict(action.options)
    if token is not None:
        base = str(ctx.options.callback_url).rstrip("/")
        options["webhook_callback_url"] = f"{base}/callbacks/{token}"
    query = ReportQuery(
        since=since,
        until=max(until, datetime.now(UTC)),
        sent=sent,
        campaign_code=ctx.campaign.name,
        options=options,
    )
    deadline = time.monotonic() + action.timeout.total_seconds()
    min_every = float(getattr(provider, "min_poll_interval", 0.0))
    every = action.every.total_seconds()
    if ctx.options.max_poll_interval is not None:
        every = min(every, ctx.options.max_poll_interval)
    every = max(every, min_every)
    pause = _Pause(ctx, step, every, min_every, token)
    cursor: Any = None
    latest: dict[str, Delivery] = {}
    counts: dict[str, float] = {}
    details: dict[str, Any] = {}
    polls = 0
    final = False
    stops: set[str] = set()
    while True:
        polls += 1
        try:
            report = retry_read(
                ctx, action.provider, partial(provider.report, query, cursor)
            )
        except ProviderCallError as e:
            return step_result("failed", f"report failed: {e.error}", polls=polls)
        for d in report.deliveries:
            latest[d.to] = d
        counts.update(report.counts)
        details.update(report.details)
        stops.update(report.optouts)
        cursor = report.cursor
        ctx.log.emit(
            "report.polled",
            ctx.run_id,
            step.id,
            provider=action.provider,
            poll=polls,
            final=report.final,
            deliveries=len(latest),
            counts=dict(report.counts),
        )
        if report.final:
            final = True
            break
        if time.monotonic() + every > deadline or ctx.stop.is_set():
            break
        if report.more:  # the next page is ready: no need to wait
            continue
        if pause():
            break
    if stops:  # kept even when the report ends short of final: a STOP is a STOP
        learn_stops(ctx, step, action.provider, sorted(stops))
    if ctx.stop.is_set():
        return step_result("interrupted", "interrupted", polls=polls)
    ctx.journal.record_deliveries(
        ctx.run_id,
        action.for_step,
        [
            (d.to, d.status.value, d.raw_code, d.at.isoformat() if d.at else None)
            for d in latest.values()
        ],
    )
    statuses = Counter(d.status for d in latest.values())
    figures: dict[str, Any] = {
        "polls": polls,
        "final": final,
        "sent": sent_total,
        "delivered": statuses.get(DeliveryStatus.DELIVERED, 0),
        "delivery_failed": statuses.get(DeliveryStatus.FAILED, 0),
        "pending": statuses.get(DeliveryStatus.PENDING, 0),
        "send_failed": send_failed,
        "counts": counts,
        "details": {
            k: v
            for k, v in details.items()
            if isinstance(v, str | int | float | bool) or v is None
        },
    }
    ctx.log.emit("report.result", ctx.run_id, step.id, **figures)
    per_recipient = bool(getattr(provider, "per_recipient_report", False))
    unmet = expectations(action.expect, figures, counts, per_recipient=per_recipient)
    text = _report_summary(figures, counts)
    if not final:
        waited = format_duration(action.timeout)
        unmet.insert(0, f"the report was not final after {waited}")
    if unmet:
        return step_result("failed", f"{text}; not met: " + "; ".join(unmet), **figures)
    return step_result("succeeded", text, **figures)


def _callback(ctx: RunContext, step: Step, action: CheckReportAction) -> str | None:
    """A single-use token for the provider's call back, when the step asks for
    one and this process has an endpoint; None: the report is polled."""
    if not action.callback:
        return None
    if not ctx.options.callback_url:
        ctx.log.emit(
            "report.no_callback",
            ctx.run_id,
            step.id,
            reason="no callback endpoint (the daemon's --callback-url): polling",
        )
        return None
    token = secrets.token_urlsafe(32)
    ctx.journal.issue_callback(token, ctx.run_id, step.id)
    return token


CALLBACK_LOOK = 0.25  # seconds between looks for a callback while waiting


@dataclass
class _Pause:
    """The wait between polls: ``every`` seconds, cut short once when the
    provider calls back (never below ``min_every``, its own floor)."""

    ctx: RunContext
    step: Step
    every: float
    min_every: float
    token: str | None
    heard: bool = False

    def __call__(self) -> bool:
        """Wait; True when the run is stopped."""
        ctx = self.ctx
        if self.token is None or self.heard:
            return ctx.stop.wait(self.every)
        start = time.monotonic()
        while (left := self.every - (time.monotonic() - start)) > 0:
            if ctx.stop.wait(min(CALLBACK_LOOK, left)):
                return True
            if ctx.journal.callback_received(self.token):
                self.heard = True
                ctx.log.emit("report.callback", ctx.run_id, self.step.id)
                floor = self.min_every - (time.monotonic() - start)
                return floor > 0 and ctx.stop.wait(floor)
        return False


def expectations(
    expect: Expect, f: dict[str, Any], counts: dict[str, float], per_recipient: bool
) -> list[str]:
    unmet = []
    sent = f["sent"]
    failed = f["delivery_failed"] + f["send_failed"]
    if expect.delivered_ratio is not None:
        if not per_recipient:
            unmet.append(
                "delivered_ratio needs a per-recipient report; this provider has none"
            )
        else:
            ratio = f["delivered"] / sent if sent else 0.0
            if ratio < expect.delivered_ratio:
                unmet.append(
                    f"delivered ratio {ratio:.3f} ({f['delivered']} delivered of "
                    f"{sent} sent) < {expect.delivered_ratio}"
                )
    if expect.max_failed is not None and failed > expect.max_failed:
        unmet.append(f"{failed} failed > {expect.max_failed}")
    if expect.max_failed_ratio is not None:
        total = sent + f["send_failed"]
        ratio = failed / total if total else 0.0
        if ratio > expect.max_failed_ratio:
            unmet.append(
                f"failed ratio {ratio:.3f} ({failed} failed of {total} sent or not "
                f"sendable) > {expect.max_failed_ratio}"
            )
    if expect.max_optout_ratio is not None:
        optouts = counts.get("OPTOUT", counts.get("optouts", 0))
        base = counts.get("SMS_SENT") or sent
        ratio = optouts / base if base else 0.0
        if ratio > expect.max_optout_ratio:
            unmet.append(
                f"opt-out ratio {ratio:.3f} ({optouts:g} opt-outs of {base:g} sent) > "
                f"{expect.max_optout_ratio}"
            )
    if expect.min_sent is not None and sent < expect.min_sent:
        unmet.append(f"{sent} sent < {expect.min_sent}")
    return unmet


def _report_summary(f: dict[str, Any], counts: dict[str, float]) -> str:
    parts = [f"{f['sent']} sent"]
    if f["delivered"] or f["delivery_failed"] or f["pending"]:
        parts.append(f"{f['delivered']} delivered, {f['delivery_failed']} failed")
        parts.append(f"{f['pending']} pending")
    if counts:
        parts.append(
            ", ".join(
                f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}"
                for k, v in sorted(counts.items())
            )
        )
    return "; ".join(parts)
