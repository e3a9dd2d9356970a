"""A sending window that closes mid-send pauses the step (time injected, no waiting)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from runkit import copy_campaign, edit, events, many_recipients

import runner.engine.ahead
import runner.engine.plan
from runner.engine.context import RunOptions
from runner.engine.run import run_campaign
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.loader.load import load_campaign
from runner.providers.setup import build_providers, resolve_options
from runner.sandbox.launch import start_for

MADRID = ZoneInfo("Europe/Madrid")


class ClosingClock:
    """Campaign time: 19:59:59 local until ``closed()`` says so, then 20:00:01."""

    def __init__(self, closed: Callable[[], bool]) -> None:
        self.closed = closed

    def __call__(self) -> datetime:
        late = self.closed()
        local = (
            datetime(2026, 11, 23, 20, 0, 1)
            if late
            else datetime(2026, 11, 23, 19, 59, 59)
        )
        return local.replace(tzinfo=MADRID).astimezone(UTC)


@pytest.mark.parametrize("ahead", [False, True], ids=["planned", "planning-ahead"])
def test_window_closing_mid_send_pauses_until_it_opens_and_resume_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: bool
) -> None:
    if ahead:  # the plan goes on while it sends, kept a few messages ahead
        monkeypatch.setattr(runner.engine.ahead, "SAMPLE", 50)
        monkeypatch.setattr(runner.engine.ahead, "LEAD", 60)
        monkeypatch.setattr(runner.engine.plan, "PLAN_BATCH", 25)
    campaign_path = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign_path, 200)

    def only_blast(d: dict) -> None:
        d["steps"] = [s for s in d["steps"] if s["id"] == "blast"]
        d["steps"][0]["window"] = {
            "hours": "09:00-20:00",
            "days": ["mon", "tue", "wed", "thu", "fri"],
        }
        d["providers"]["mailup"].update(rate="200/s", concurrency=2)

    edit(campaign_path, only_blast)
    campaign, _ = load_campaign(campaign_path, env={})
    options, redactor = resolve_options(campaign, {}, sandbox=True)
    sandbox, urls = start_for(campaign, options)
    journal = Journal(tmp_path / "j.db")
    log = EventLog(tmp_path / "events.jsonl", redact=redactor)
    stop = threading.Event()
    paused = threading.Event()

    original_emit = log.emit

    def emit(event: str, *args: object, **kw: object) -> None:
        original_emit(event, *args, **kw)  # type: ignore[arg-type]
        if event == "step.paused":
            paused.set()
            stop.set()  # the test ends the run here: the next opening is tomorrow

    log.emit = emit  # type: ignore[method-assign]
    try:
        providers = build_providers(campaign, options, urls)
        result = run_campaign(
            campaign,
            journal=journal,
            log=log,
            providers=providers,
            options=RunOptions(now=True),
            stop=stop,
            # the window closes once the provider has 20 messages: mid-send
            clock=ClosingClock(lambda: len(sandbox.emulators["mailup"].messages) >= 20),
        )
        assert paused.is_set()
        assert result.exit_code == 130
        counts = journal.message_counts(result.run_id, "blast")
        sent_before = counts.get("sent", 0)
        assert 0 < sent_before < 200 and counts.get("queued", 0) == 200 - sent_before
        assert counts.get("pending", 0) == 0
        log.flush()
        pause = next(
            e for e in events(tmp_path / "events.jsonl") if e["event"] == "step.paused"
        )
        reopens = datetime.fromisoformat(pause["until"]).astimezone(MADRID)
        assert (reopens.date(), reopens.hour, reopens.minute) == (
            (datetime(2026, 11, 24)).date(),
            9,
            0,
        )
        # when the window opens again, the same run continues with what is queued
        opened = datetime(2026, 11, 24, 9, 0, 5, tzinfo=MADRID)
        again = run_campaign(
            campaign,
            journal=journal,
            log=log,
            providers=providers,
            options=RunOptions(now=True, resume=result.run_id),
            clock=lambda: opened + timedelta(seconds=1),
        )
        assert again.exit_code == 0
        assert journal.message_counts(result.run_id, "blast") == {"sent": 200}
        received = sandbox.emulators["mailup"].messages
        assert len(received) == 200 and len({m.to for m in received}) == 200
    finally:
        for p in providers.values():
            p.close()
        sandbox.stop()
        log.close()
        journal.close()
