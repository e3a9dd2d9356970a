"""A frequency cap that defers: the held messages go when the window allows
(time injected, no waiting)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runkit import copy_campaign, edit

from runner.engine.context import RunOptions
from runner.engine.run import run_campaign
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.loader.load import load_campaign
from runner.providers.setup import build_providers, resolve_options
from runner.sandbox.launch import start_for


def capped_campaign(tmp: Path, name: str, **limits: str) -> Path:
    path = copy_campaign("mailup-spring-promo.yaml", tmp)

    def apply(d: dict[str, Any]) -> None:
        d["name"] = name
        d["limits"] = {"per_recipient": "1/24h", **limits}
        d["steps"] = [d["steps"][1]]  # the send alone

    edit(path, apply)
    return path


@dataclass
class InProcess:
    """A campaign's emulators, journal, event log and providers in this process;
    a step that pauses records why and stops the run (the test resumes it)."""

    sandbox: Any
    journal: Journal
    log: EventLog
    providers: Any
    stop: threading.Event = field(default_factory=threading.Event)
    pauses: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def in_process(campaign: Any, tmp: Path) -> Iterator[InProcess]:
    options, redactor = resolve_options(campaign, {}, sandbox=True)
    sandbox, urls = start_for(campaign, options)
    run = InProcess(
        sandbox,
        Journal(tmp / "j.db"),
        EventLog(tmp / "events.jsonl", redact=redactor),
        build_providers(campaign, options, urls),
    )
    original_emit = run.log.emit

    def emit(event: str, *args: object, **kw: object) -> None:
        original_emit(event, *args, **kw)  # type: ignore[arg-type]
        if event == "step.paused":
            run.pauses.append(dict(kw))
            run.stop.set()

    run.log.emit = emit  # type: ignore[method-assign]
    try:
        yield run
    finally:
        for p in run.providers.values():
            p.close()
        sandbox.stop()
        run.log.close()
        run.journal.close()


def test_on_cap_defer_sends_the_held_messages_when_the_window_allows(
    tmp_path: Path,
) -> None:
    first_path = capped_campaign(tmp_path / "a", "spring-a")
    second_path = capped_campaign(tmp_path / "b", "spring-b", on_cap="defer")
    first, _ = load_campaign(first_path, env={})
    second, _ = load_campaign(second_path, env={})
    with in_process(first, tmp_path) as here:
        journal, log, providers = here.journal, here.log, here.providers
        sandbox, pauses, stop = here.sandbox, here.pauses, here.stop
        done = run_campaign(
            first,
            journal=journal,
            log=log,
            providers=providers,
            options=RunOptions(now=True),
        )
        assert done.exit_code == 0
        got_first = journal.message_counts(done.run_id, "blast")["sent"]
        sent_at = min(
            datetime.fromisoformat(r["sent_at"])
            for r in journal.messages_for(done.run_id, "blast", ["sent"])
        )
        now = datetime.now(UTC)
        held = run_campaign(
            second,
            journal=journal,
            log=log,
            providers=providers,
            options=RunOptions(now=True),
            stop=stop,
            clock=lambda: now,
        )
        assert held.exit_code == 130  # stopped by the test while paused
        assert journal.message_counts(held.run_id, "blast") == {"deferred": got_first}
        [pause] = pauses
        until = datetime.fromisoformat(str(pause["until"]))
        assert abs((until - (sent_at + timedelta(hours=24))).total_seconds()) < 1
        assert "deferred by the frequency cap" in str(pause["reason"])
        assert len(sandbox.emulators["mailup"].messages) == got_first  # none yet

        later = until + timedelta(seconds=1)
        again = run_campaign(
            second,
            journal=journal,
            log=log,
            providers=providers,
            options=RunOptions(now=True, resume=held.run_id),
            clock=lambda: later,
        )
        assert again.exit_code == 0
        assert journal.message_counts(held.run_id, "blast") == {"sent": got_first}
        received = sandbox.emulators["mailup"].messages
        assert len(received) == 2 * got_first  # each recipient once per campaign
        assert len({m.to for m in received}) == got_first


def test_a_window_on_each_recipients_clock_sends_the_open_zones_and_waits(
    tmp_path: Path,
) -> None:
    """09:00-20:00 in each recipient's zone, at Monday 10:00 UTC: Madrid (11:00)
    and Tokyo (19:00) are sent now, New York (05:00) at its 09:00 opening."""
    path = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    madrid, new_york, tokyo, by_field = (
        "+34600000001",
        "+12125550123",
        "+819012345678",
        "+34600000002",
    )

    def apply(d: dict[str, Any]) -> None:
        d["recipients"] = [
            {"phone": madrid, "name": "Ana"},
            {"phone": new_york, "name": "Bob"},
            {"phone": tokyo, "name": "Chie"},
            {"phone": by_field, "name": "Dan", "tz": "America/New_York"},
        ]
        d["steps"] = [d["steps"][1]]
        d["steps"][0]["window"] = {
            "hours": "09:00-20:00",
            "timezone": "recipient",
            "timezone_field": "tz",
        }

    edit(path, apply)
    campaign, _ = load_campaign(path, env={})
    monday = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    with in_process(campaign, tmp_path) as here:
        journal, log, providers = here.journal, here.log, here.providers
        sandbox, pauses, stop = here.sandbox, here.pauses, here.stop
        first = run_campaign(
            campaign,
            journal=journal,
            log=log,
            providers=providers,
            options=RunOptions(now=True),
            stop=stop,
            clock=lambda: monday,
        )
        assert first.exit_code == 130
        got = {m.to for m in sandbox.emulators["mailup"].messages}
        assert got == {madrid.lstrip("+"), tokyo.lstrip("+")}
        [pause] = pauses
        assert datetime.fromisoformat(str(pause["until"])) == datetime(
            2026, 12, 7, 14, 0, tzinfo=UTC
        )  # 09:00 in New York
        zones = {r["phone"]: r["zone"] for r in journal.messages_for(first.run_id)}
        assert zones == {
            madrid: "Europe/Madrid",  # the campaign's, among Spain's two
            new_york: "America/New_York",
            tokyo: "Asia/Tokyo",
            by_field: "America/New_York",  # the field wins over the number
        }
        opened = datetime(2026, 12, 7, 14, 0, 1, tzinfo=UTC)
        again = run_campaign(
            campaign,
            journal=journal,
            log=log,
            providers=providers,
            options=RunOptions(now=True, resume=first.run_id),
            clock=lambda: opened,
        )
        assert again.exit_code == 0
        assert journal.message_counts(first.run_id, "blast") == {"sent": 4}
        received = [m.to for m in sandbox.emulators["mailup"].messages]
        assert sorted(received) == sorted(p.lstrip("+") for p in zones)  # once each


def test_preview_counts_each_zone_and_says_when_its_window_opens(tmp_path: Path) -> None:
    from runner.commands.preview import zone_lines

    path = copy_campaign("mailup-spring-promo.yaml", tmp_path)

    def apply(d: dict[str, Any]) -> None:
        d["recipients"] = [
            {"phone": p, "name": "Ana"}
            for p in ("+34600000001", "+12125550123", "+12125550124", "+819012345678")
        ]
        d["steps"] = [d["steps"][1]]
        d["steps"][0]["window"] = {"hours": "09:00-20:00", "timezone": "recipient"}

    edit(path, apply)
    campaign, _ = load_campaign(path, env={})
    lines = zone_lines(campaign, ["blast"], datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    assert lines == [
        "step blast: window 09:00-20:00 on each recipient's clock, "
        "at 2026-12-07 10:00 UTC:",
        "  America/New_York: 2 recipients, opens 2026-12-07 09:00 EST",
        "  Asia/Tokyo: 1 recipients, open now",
        "  Europe/Madrid: 1 recipients, open now",
    ]
