"""What every step implementation shares: results and retried reads."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from runner.engine.context import RunContext, StepResult
from runner.providers.base import (
    CallError,
    Delivery,
    ErrorKind,
    ProviderCallError,
    Report,
    ReportQuery,
)

T = TypeVar("T")
READ_RETRYABLE = frozenset(
    {ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED, ErrorKind.PROTOCOL}
)


def step_result(status: str, message: str = "", **detail: Any) -> StepResult:
    return StepResult(status, message, detail)


def read_report(
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
