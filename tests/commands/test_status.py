"""``campaign-runner status``: every time in one zone, named in the header."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from runner.cli import main
from runner.commands.output import Zone
from runner.journal.journal import Journal

STAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S*")


@pytest.fixture
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This machine in India (+05:30 all year: no daylight saving to trip on)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


@pytest.fixture
def journal_with_a_paused_run(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A running campaign (its lease held, so it has an owner), paused from a
    terminal, and a daemon's heartbeat: every kind of time ``status`` shows."""
    state = tmp_path / "j.db"
    j = Journal(state)
    try:
        run = j.start_run("promo", str(tmp_path / "promo.yaml"), {})
        assert j.take_lease("promo", "run") is None
        j.renew_lease("promo", run)
        j.request_control(run, "paused", "ana@laptop")
        j.heartbeat("leader", 1)
        row = j.get_run(run)
        assert row is not None
        lease = j.lease_of("promo")
        assert lease is not None
        times = {
            "run": run,
            "started": row["started_at"],
            "control": row["control_at"],
            "owner": lease.since,
        }
    finally:
        j.close()
    return state, times


def local(iso: str, tz: str) -> str:
    return f"{datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M:%S}"


def test_every_time_is_in_the_machines_zone_and_the_header_says_so(
    kolkata: None,
    journal_with_a_paused_run: tuple[Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    state, t = journal_with_a_paused_run
    assert main(["status", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "times in Asia/Kolkata (this machine's zone; --utc for UTC)"
    )
    assert f"since {local(t['started'], 'Asia/Kolkata')}" in out
    assert f"paused by ana@laptop at {local(t['control'], 'Asia/Kolkata')}" in out
    assert f"since {local(t['owner'], 'Asia/Kolkata')}" in out
    stamps = STAMP.findall(out)
    assert len(stamps) >= 5  # the daemon's two, the run's, the pause's, the owner's
    # one form, no offsets, no ISO 'T' left: the header names the zone once
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", s) for s in stamps), stamps


def test_utc_shows_every_time_in_utc(
    kolkata: None,
    journal_with_a_paused_run: tuple[Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    state, t = journal_with_a_paused_run
    assert main(["status", "--state", str(state), "--utc"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "times in UTC"
    assert f"since {local(t['started'], 'UTC')}" in out
    assert f"at {local(t['control'], 'UTC')}" in out


def test_a_schedule_time_in_the_campaigns_zone_is_shown_in_the_chosen_one() -> None:
    caracas = datetime(2027, 1, 15, 8, 0, tzinfo=ZoneInfo("America/Caracas"))
    assert Zone(UTC, "UTC").show(caracas) == "2027-01-15 12:00:00"
    madrid = Zone(ZoneInfo("Europe/Madrid"), "Europe/Madrid")
    assert madrid.show(caracas) == "2027-01-15 13:00:00"
    assert madrid.show("2027-07-15T12:00:00.123+00:00") == "2027-07-15 14:00:00"
    assert madrid.show(None) == "-" and madrid.show("soon") == "soon"


def test_the_zone_is_named_from_the_machine(kolkata: None) -> None:
    zone = Zone.chosen(utc=False)
    assert zone.name == "Asia/Kolkata"
    assert Zone.chosen(utc=True).name == "UTC"
