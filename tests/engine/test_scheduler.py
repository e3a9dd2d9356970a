from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from runner.engine.scheduler import in_window, next_window_open, start_time
from runner.model.campaign import SendAction, Step, Timing, WaitAction, Window

MADRID = ZoneInfo("Europe/Madrid")
WEEKDAYS = Window(time(9), time(20), (0, 1, 2, 3, 4))


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (
            datetime(2026, 11, 23, 12, 0),
            datetime(2026, 11, 23, 12, 0),
        ),  # Monday noon: open
        (datetime(2026, 11, 23, 20, 0), datetime(2026, 11, 24, 9, 0)),  # closes at 20:00
        (datetime(2026, 11, 23, 7, 0), datetime(2026, 11, 23, 9, 0)),
        (datetime(2026, 11, 27, 21, 0), datetime(2026, 11, 30, 9, 0)),  # Friday night
        (datetime(2026, 11, 28, 12, 0), datetime(2026, 11, 30, 9, 0)),  # Saturday
    ],
)
def test_next_window_open(local: datetime, expected: datetime) -> None:
    t = local.replace(tzinfo=MADRID)
    assert next_window_open(WEEKDAYS, t, MADRID) == expected.replace(tzinfo=MADRID)


def test_window_across_midnight_belongs_to_its_opening_day() -> None:
    friday_night = Window(time(22), time(6), (4,))
    assert in_window(friday_night, datetime(2026, 11, 27, 23, 0, tzinfo=MADRID), MADRID)
    assert in_window(friday_night, datetime(2026, 11, 28, 5, 59, tzinfo=MADRID), MADRID)
    assert not in_window(
        friday_night, datetime(2026, 11, 28, 23, 0, tzinfo=MADRID), MADRID
    )


def test_window_opening_in_a_dst_gap_lands_on_a_real_instant() -> None:
    # 2026-03-29 02:30 does not exist in Madrid (clocks jump 02:00 -> 03:00)
    w = Window(time(2, 30), time(4), (6,))
    opens = next_window_open(w, datetime(2026, 3, 29, 1, 0, tzinfo=MADRID), MADRID)
    assert opens.astimezone(ZoneInfo("UTC")) == datetime(
        2026, 3, 29, 1, 30, tzinfo=ZoneInfo("UTC")
    )


def test_start_time_combines_at_after_wait_and_window() -> None:
    now = datetime(2026, 11, 23, 8, 0, tzinfo=MADRID)
    prev = now
    send = Step(
        "s", SendAction(("m",), "t"), Timing(after=timedelta(minutes=30), window=WEEKDAYS)
    )
    assert start_time(send, prev_end=prev, now=now, tz=MADRID) == now.replace(hour=9)
    late = Step("s", SendAction(("m",), "t"), Timing(after=timedelta(hours=2)))
    assert start_time(late, prev_end=prev, now=now, tz=MADRID) == now + timedelta(hours=2)
    at = Step("s", SendAction(("m",), "t"), Timing(at=now + timedelta(days=1)))
    assert start_time(at, prev_end=prev, now=now, tz=MADRID) == now + timedelta(days=1)
    pause = Step("p", WaitAction(timedelta(minutes=10)))
    assert start_time(pause, prev_end=prev, now=now, tz=MADRID) == now + timedelta(
        minutes=10
    )
    # --now ignores at/after/wait but a window still protects people at night
    assert start_time(late, prev_end=prev, now=now, tz=MADRID, ignore_timing=True) == now
    assert start_time(send, prev_end=prev, now=now, tz=MADRID, ignore_timing=True) == (
        now.replace(hour=9)
    )
    assert (
        start_time(
            send,
            prev_end=prev,
            now=now,
            tz=MADRID,
            ignore_timing=True,
            ignore_windows=True,
        )
        == now
    )
