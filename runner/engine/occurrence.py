"""Which sending of a campaign a run is: its occurrence.

A one-off campaign (no ``schedule``, or ``schedule.at``) has one, ``once``; a
``cron:`` campaign has one per fire time, named by it in the campaign's time
zone; a person may name one (``run --occurrence KEY``) or ask for a new one
(``run --again``). The journal keeps one real run per occurrence, so running an
occurrence again continues it instead of sending twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from runner.model.campaign import Campaign

ONCE = "once"
# how far back to look for a cron campaign's last fire time, widening each time
_LOOKBACK = (
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=32),
    timedelta(days=367),
)


def current(campaign: Campaign, now: datetime | None = None) -> str:
    """The occurrence a run started now belongs to."""
    schedule = campaign.schedule
    if schedule is None or not schedule.cron:
        return ONCE
    now = now or datetime.now(UTC)
    fired = last_fire(
        CronTrigger.from_crontab(schedule.cron, timezone=campaign.timezone), now
    )
    if fired is None:
        return ONCE
    return label(fired.astimezone(campaign.timezone))


def last_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now``."""
    for back in _LOOKBACK:
        t = trigger.get_next_fire_time(None, now - back)
        last = None
        while t is not None and t <= now:
            last = t
            t = trigger.get_next_fire_time(t, t + timedelta(seconds=1))
        if last is not None:
            return last
    return None


def label(t: datetime) -> str:
    return t.isoformat(timespec="minutes")


def again(now: datetime | None = None) -> str:
    """A new occurrence for a repeat on purpose, named by the time."""
    return "again-" + (now or datetime.now(UTC)).astimezone(UTC).isoformat(
        timespec="seconds"
    )
