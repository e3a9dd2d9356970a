"""Campaign timing -> APScheduler 3.11 jobs. The only module that knows APScheduler
triggers; the engine asks it "run this at that time" and for window arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from runner.model.campaign import Step, WaitAction, Window


def in_window(window: Window, t: datetime, tz: tzinfo) -> bool:
    local = t.astimezone(tz)
    clock = local.timetz().replace(tzinfo=None)
    if window.start < window.end:  # same-day window, e.g. 09:00-20:00
        return local.weekday() in window.days and window.start <= clock < window.end
    # a window across midnight (22:00-06:00) belongs to the day it opens on
    if clock >= window.start:
        return local.weekday() in window.days
    yesterday = (local - timedelta(days=1)).weekday()
    return clock < window.end and yesterday in window.days


def next_window_open(window: Window, t: datetime, tz: tzinfo) -> datetime:
    """``t`` itself when inside the window, else the next time it opens."""
    if in_window(window, t, tz):
        return t
    local = t.astimezone(tz)
    for days in range(0, 8):
        day = (local + timedelta(days=days)).date()
        if day.weekday() not in window.days:
            continue
        opens = datetime.combine(day, window.start).replace(tzinfo=tz)
        # normalise through UTC so DST gaps land on a real instant
        opens = opens.astimezone(UTC).astimezone(tz)
        if opens > local:
            return opens
    raise ValueError("window has no day to open on")


def start_time(
    step: Step,
    *,
    prev_end: datetime,
    now: datetime,
    tz: tzinfo,
    ignore_timing: bool = False,
    ignore_windows: bool = False,
) -> datetime:
    """When ``step`` may start: ``at``, ``after`` the previous step, ``wait``, window."""
    t = now
    if not ignore_timing:
        if step.timing.at is not None:
            t = max(t, step.timing.at)
        if step.timing.after is not None:
            t = max(t, prev_end + step.timing.after)
        if isinstance(step.action, WaitAction):
            t = max(t, prev_end + step.action.duration)
    window = step.timing.window
    # a window on each recipient's clock is applied per zone by the send itself
    if window is not None and not window.per_recipient and not ignore_windows:
        t = next_window_open(window, t, tz)
    return t


class StepScheduler:
    """A BackgroundScheduler whose jobs are one-off steps and polls.

    Jobs run on a small pool of executor threads, never on the scheduler's own
    thread; a job never misfires (a late step still runs: lateness is logged by
    the engine, not silently skipped).
    """

    def __init__(self, workers: int = 4) -> None:
        self._sched = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={
                "misfire_grace_time": None,
                "coalesce": False,
                "max_instances": 1,
            },
        )

    def start(self) -> None:
        self._sched.start()

    def at(self, when: datetime, fn: Callable[..., Any], *args: Any, job_id: str) -> None:
        self._sched.add_job(
            fn, DateTrigger(run_date=when), args=args, id=job_id, replace_existing=True
        )

    def cancel_all(self) -> None:
        self._sched.remove_all_jobs()

    def shutdown(self, wait: bool = True) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=wait)
