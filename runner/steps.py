"""What each kind of step does: send, check_credits, check_report, wait.

Each executor takes the run context and the step and returns a StepResult; they
talk to providers only through the capabilities in runner.providers.base.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from runner.campaign import (
    CheckCreditsAction,
    CheckReportAction,
    Expect,
    SendAction,
    Step,
)
from runner.providers.base import (
    CallError,
    Delivery,
    DeliveryStatus,
    ErrorKind,
    ProviderCallError,
    Report,
    ReportQuery,
    SentRecord,
)
from runner.scheduler import in_window, next_window_open
from runner.sender import Dispatcher, Tally, plan

if TYPE_CHECKING:
    from runner.engine import RunContext, StepResult

T = TypeVar("T")
READ_RETRYABLE = frozenset(
    {ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED, ErrorKind.PROTOCOL}
)


def _result(status: str, message: str = "", **detail: Any) -> StepResult:
    from runner.engine import StepResult

    return StepResult(status, message, detail)


# -- when: -------------------------------------------------------------------------


def step_outcomes(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """What ``when:`` conditions see: ``steps.<id>.ok``, ``.status``, detail figures."""
    return {
        sid: {
            **r.detail,
            "status": r.status,
            "ok": r.status == "succeeded",
            "message": r.message,
        }
        for sid, r in ctx.results.items()
    }


def condition(ctx: RunContext, expression: str) -> bool:
    from runner.templating import Renderer

    renderer = Renderer(ctx.campaign)
    value = renderer.evaluate(
        expression, {"steps": step_outcomes(ctx), "vars": ctx.campaign.vars}
    )
    return bool(value)


# -- send --------------------------------------------------------------------------


def _rendered(
    ctx: RunContext, action: SendAction
) -> Iterator[tuple[str, int | None, str | None, int, str | None]]:
    from runner.errors import TemplateError
    from runner.recipients import iter_recipients
    from runner.templating import Renderer

    renderer = Renderer(ctx.campaign)
    for r in iter_recipients(ctx.campaign, ctx.recipient_stats):
        try:
            out = renderer.render(action.template, r)
        except TemplateError as e:
            yield r.phone, r.row, None, 0, str(e)
            continue
        yield r.phone, r.row, out.text, out.segmentation.segments, None


def send(ctx: RunContext, step: Step) -> StepResult:
    action = step.action
    assert isinstance(action, SendAction)
    journal, run_id = ctx.journal, ctx.run_id
    primary = action.providers[0]
    interrupted = journal.mark_interrupted(run_id, step.id)
    if interrupted:
        ctx.log.emit("step.unknown_after_crash", run_id, step.id, count=interrupted)
    reconcile_unknown(ctx, step)
    if ctx.options.resend_unknown:
        n = journal.requeue(run_id, step.id, ["unknown"])
        if n:
            ctx.log.emit("step.resend_unknown", run_id, step.id, count=n)
    detail = journal.step_status(run_id).get(step.id, {}).get("detail", {})
    if not detail.get("planned"):
        from runner.recipients import RecipientStats

        ctx.recipient_stats = RecipientStats()
        added = plan(journal, run_id, step.id, primary, _rendered(ctx, action))
        stats = ctx.recipient_stats
        detail = {"planned": True, "recipients": _stats_dict(stats)}
        for bad in stats.invalid_rows:
            ctx.log.emit(
                "recipient.invalid",
                run_id,
                step.id,
                where=bad.location,
                to=bad.phone,
                reason=bad.reason,
            )
        if ctx.out is not None:
            counts = _stats_dict(stats)
            ctx.out.write(
                f"  recipients: {counts['accepted']} to send ({counts['read']} read, "
                f"{counts['invalid']} invalid, {counts['duplicates']} duplicates, "
                f"{counts['excluded']} excluded, {counts['filtered_out']} filtered out)\n"
            )
            for bad in stats.invalid_rows:
                ctx.out.write(f"    skipped {bad.location}: {bad.phone}: {bad.reason}\n")
            if stats.invalid > len(stats.invalid_rows):
                ctx.out.write(
                    f"    ... and {stats.invalid - len(stats.invalid_rows)} more\n"
                )
        journal.finish_step(run_id, step.id, "running", detail, step.kind)
        ctx.log.emit("step.planned", run_id, step.id, added=added, **_stats_dict(stats))
    if ctx.options.dry_run:
        counts = journal.message_counts(run_id, step.id)
        return _result(
            "succeeded",
            f"dry run: {counts.get('queued', 0)} messages would be sent",
            planned=True,
            counts=counts,
        )

    tally = Tally()
    window = step.timing.window
    tz = ctx.campaign.timezone

    def window_open() -> bool:
        return (
            window is None
            or ctx.options.ignore_windows
            or in_window(window, ctx.clock(), tz)
        )

    progress = Progress(
        ctx, step.id, tally, journal.message_counts(run_id, step.id).get("queued", 0)
    )
    down: dict[str, str] = {}
    try:
        # A round sends what is queued; unknown outcomes that the provider's own
        # report settles as "never sent" are queued again for the next round.
        for _round in range(3):
            for name in action.providers:
                if name in down:
                    continue
                provider = ctx.providers[name]
                dispatcher = Dispatcher(
                    journal=journal,
                    log=ctx.log,
                    run_id=run_id,
                    step_id=step.id,
                    provider_name=name,
                    provider=provider,
                    limiter=ctx.limiters[name],
                    policy=provider.config.retry,
                    sender=action.sender or _default_sender(provider),
                    stop=ctx.stop,
                    keep_going=window_open,
                    tally=tally,
                )
                result = dispatcher.run()
                if result.provider_down is None:
                    break
                down[name] = str(result.provider_down)
                if name != action.providers[-1]:
                    ctx.log.emit(
                        "step.failover",
                        run_id,
                        step.id,
                        provider=name,
                        reason=str(result.provider_down),
                    )
            if (
                ctx.stop.is_set()
                or not window_open()
                or len(down) == len(action.providers)
            ):
                break
            if not reconcile_unknown(ctx, step):
                break
    finally:
        progress.stop()
    counts = journal.message_counts(run_id, step.id)
    summary = {
        "counts": counts,
        "retries": tally.retries,
        "failed_by_reason": dict(tally.failed),
        "planned": True,
        "recipients": detail.get("recipients", {}),
    }
    queued = counts.get("queued", 0) + counts.get("pending", 0)
    if ctx.stop.is_set():
        return _result("interrupted", "interrupted", **summary)
    if queued and not down and not window_open() and window is not None:
        from runner.engine import StepResult

        resume = next_window_open(window, ctx.clock(), tz)
        return StepResult(
            "paused", f"outside the sending window, {queued} queued", summary, resume
        )
    text = _send_summary(counts, tally)
    if not sum(counts.values()):
        return _result("failed", "no recipient to send to", **summary)
    if queued:
        return _result(
            "failed", f"{text}; {queued} not sent: " + "; ".join(down), **summary
        )
    failed = counts.get("failed", 0)
    if failed and not counts.get("sent", 0):
        return _result("failed", text, **summary)
    return _result("succeeded", text, **summary)


def _default_sender(provider: Any) -> str | None:
    value = provider.options.get("sender")
    return None if value is None else str(value)


def _stats_dict(stats: Any) -> dict[str, int]:
    keys = ("read", "invalid", "duplicates", "excluded", "filtered_out", "accepted")
    return {k: int(getattr(stats, k, 0)) for k in keys}


def _send_summary(counts: dict[str, int], tally: Tally) -> str:
    parts = [f"sent {counts.get('sent', 0)}", f"failed {counts.get('failed', 0)}"]
    if counts.get("unknown"):
        parts.append(f"unknown {counts['unknown']}")
    if tally.retries:
        parts.append(f"retries {tally.retries}")
    if tally.failed:
        reasons = ", ".join(f"{k} x{v}" for k, v in tally.failed.most_common(5))
        parts.append(f"({reasons})")
    return ", ".join(parts)


def reconcile_unknown(ctx: RunContext, step: Step) -> int:
    """Settle ``unknown`` messages from the provider's own per-recipient report.

    A number the report shows is ``sent``; when a complete pass over a
    per-recipient report (``per_recipient_report``) does not list the number, the
    call never took effect and the message goes back to ``queued``. Without such a report
    the messages stay ``unknown`` and are listed for the user. Only messages older
    than the provider's ``report_lag`` are judged, so a report that is merely late
    cannot cause a second send. Returns how many went back to ``queued``.
    """
    from runner.providers.base import Capability

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
            report = _read_report(ctx, name, provider, query)
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


def _read_report(
    ctx: RunContext, name: str, provider: Any, query: ReportQuery, max_pages: int = 1000
) -> Report | None:
    """One complete pass over a paged report (None when it did not complete)."""
    cursor = None
    deliveries: list[Delivery] = []
    for _ in range(max_pages):
        report = retry_read(ctx, name, partial(provider.report, query, cursor))
        deliveries.extend(report.deliveries)
        if not report.more:
            return Report(
                final=report.final,
                deliveries=tuple(deliveries),
                counts=report.counts,
                details=report.details,
                cursor=report.cursor,
            )
        cursor = report.cursor
    return None


def retry_read(
    ctx: RunContext, provider: str, call: Callable[[], T], attempts: int = 6
) -> T:
    """Read-only calls (report, balance) are safe to retry on transient errors.

    Each attempt takes a slot of the provider's rate limiter, shared with any send
    in progress, so polls and sends together stay under the provider's ceiling.
    """
    limiter = ctx.limiters.get(provider)
    for attempt in range(1, attempts + 1):
        if limiter is not None and not limiter.acquire(ctx.stop):
            raise ProviderCallError(
                CallError(ErrorKind.TRANSIENT, "stopped", "interrupted")
            )
        try:
            return call()
        except ProviderCallError as e:
            # a read changes nothing at the provider: whatever it may have done, a
            # transient, rate-limited or garbled answer is worth asking again
            if (
                e.error.kind not in READ_RETRYABLE
                or attempt == attempts
                or ctx.stop.is_set()
            ):
                raise
            delay = min(30.0, e.error.retry_after or 0.5 * 2 ** (attempt - 1))
            ctx.stop.wait(delay)
    raise AssertionError("unreachable")


# -- check_credits -------------------------------------------------------------------


def send_totals(ctx: RunContext, step_id: str) -> Any:
    from runner.preview import send_totals as totals

    target = ctx.campaign.step(step_id).action
    if not isinstance(target, SendAction):
        raise ValueError(f"step {step_id!r} is not a send step")
    return totals(ctx.campaign, target.template)


def check_credits(ctx: RunContext, step: Step) -> StepResult:
    action = step.action
    assert isinstance(action, CheckCreditsAction)
    provider = ctx.providers[action.provider]
    minimum = action.min
    if action.min_expr is not None:
        from runner.templating import Renderer

        cache: dict[str, Any] = {}

        def totals(sid: str) -> Any:
            if sid not in cache:
                cache[sid] = send_totals(ctx, sid)
            return cache[sid]

        value = Renderer(ctx.campaign).evaluate(
            action.min_expr,
            {
                "segments": lambda sid: totals(sid).segments,
                "messages": lambda sid: totals(sid).messages,
                "vars": ctx.campaign.vars,
            },
        )
        minimum = float(value)
    if ctx.options.dry_run:
        return _result(
            "succeeded", f"dry run: would require {minimum:g} credits", min=minimum
        )
    try:
        balance = retry_read(ctx, action.provider, provider.balance)
    except ProviderCallError as e:
        return _result("failed", f"cannot read the balance: {e.error}", min=minimum)
    ctx.log.emit(
        "credits.checked",
        ctx.run_id,
        step.id,
        provider=action.provider,
        credits=balance.credits,
        unit=balance.unit,
        min=minimum,
    )
    detail = {"credits": balance.credits, "unit": balance.unit, "min": minimum}
    if minimum is not None and balance.credits < minimum:
        return _result(
            "failed",
            f"{balance.credits:g} {balance.unit} available, {minimum:g} required",
            **detail,
        )
    return _result(
        "succeeded",
        f"{balance.credits:g} {balance.unit} available"
        + (f" (>= {minimum:g})" if minimum is not None else ""),
        **detail,
    )


# -- check_report --------------------------------------------------------------------


def check_report(ctx: RunContext, step: Step) -> StepResult:
    action = step.action
    assert isinstance(action, CheckReportAction)
    provider = ctx.providers[action.provider]
    if ctx.options.dry_run:
        return _result("succeeded", "dry run: report not fetched")
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
    query = ReportQuery(
        since=since,
        until=max(until, datetime.now(UTC)),
        sent=sent,
        campaign_code=ctx.campaign.name,
        options=action.options,
    )
    deadline = time.monotonic() + action.timeout.total_seconds()
    min_every = float(getattr(provider, "min_poll_interval", 0.0))
    every = action.every.total_seconds()
    if ctx.options.max_poll_interval is not None:
        every = min(every, ctx.options.max_poll_interval)
    every = max(every, min_every)
    cursor: Any = None
    latest: dict[str, Delivery] = {}
    counts: dict[str, float] = {}
    details: dict[str, Any] = {}
    polls = 0
    final = False
    while True:
        polls += 1
        try:
            report = retry_read(
                ctx, action.provider, partial(provider.report, query, cursor)
            )
        except ProviderCallError as e:
            return _result("failed", f"report failed: {e.error}", polls=polls)
        for d in report.deliveries:
            latest[d.to] = d
        counts.update(report.counts)
        details.update(report.details)
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
        if ctx.stop.wait(every):
            break
    if ctx.stop.is_set():
        return _result("interrupted", "interrupted", polls=polls)
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
        unmet.insert(0, f"the report was not final after {action.timeout}")
    if unmet:
        return _result("failed", f"{text}; not met: " + "; ".join(unmet), **figures)
    return _result("succeeded", text, **figures)


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
                unmet.append(f"delivered ratio {ratio:.3f} < {expect.delivered_ratio}")
    if expect.max_failed is not None and failed > expect.max_failed:
        unmet.append(f"{failed} failed > {expect.max_failed}")
    if expect.max_failed_ratio is not None:
        total = sent + f["send_failed"]
        ratio = failed / total if total else 0.0
        if ratio > expect.max_failed_ratio:
            unmet.append(f"failed ratio {ratio:.3f} > {expect.max_failed_ratio}")
    if expect.max_optout_ratio is not None:
        optouts = counts.get("OPTOUT", counts.get("optouts", 0))
        base = counts.get("SMS_SENT") or sent
        ratio = optouts / base if base else 0.0
        if ratio > expect.max_optout_ratio:
            unmet.append(f"opt-out ratio {ratio:.3f} > {expect.max_optout_ratio}")
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


# -- wait --------------------------------------------------------------------------


def wait(ctx: RunContext, step: Step) -> StepResult:
    """The delay itself is the step's start time (runner.scheduler.start_time)."""
    return _result("succeeded")


EXECUTORS: dict[str, Callable[[RunContext, Step], StepResult]] = {
    "check_credits": check_credits,
    "check_report": check_report,
    "send": send,
    "wait": wait,
}


class Progress:
    """A progress line on stderr: redrawn on a terminal, periodic lines otherwise."""

    def __init__(self, ctx: RunContext, step_id: str, tally: Tally, total: int) -> None:
        import sys

        self.stream = sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = ctx.out is not None
        self.step_id = step_id
        self.tally = tally
        self.total = total
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        if self.enabled:
            self._thread.start()

    def _line(self) -> str:
        t = self.tally
        done = t.done
        rate = done / max(time.monotonic() - self.started, 1e-6)
        pct = f"{100 * done / self.total:5.1f}%" if self.total else ""
        failed = sum(t.failed.values())
        return (
            f"[{self.step_id}] {done}/{self.total} {pct} sent {t.sent} failed {failed} "
            f"unknown {t.unknown} retries {t.retries} ({rate:.0f} msg/s)"
        )

    def _loop(self) -> None:
        interval = 0.5 if self.tty else 10.0
        while not self._stop.wait(interval):
            if self.tty:
                self.stream.write("\r" + self._line() + "\x1b[K")
            else:
                self.stream.write(self._line() + "\n")
            self.stream.flush()

    def stop(self) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join(timeout=2)
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
