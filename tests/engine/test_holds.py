"""A frequency cap that defers: the held messages go when the window allows
(time injected, no waiting)."""

from __future__ import annotations

import threading
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


def test_on_cap_defer_sends_the_held_messages_when_the_window_allows(
    tmp_path: Path,
) -> None:
    first_path = capped_campaign(tmp_path / "a", "spring-a")
    second_path = capped_campaign(tmp_path / "b", "spring-b", on_cap="defer")
    first, _ = load_campaign(first_path, env={})
    second, _ = load_campaign(second_path, env={})
    options, redactor = resolve_options(first, {}, sandbox=True)
    sandbox, urls = start_for(first, options)
    journal = Journal(tmp_path / "j.db")
    log = EventLog(tmp_path / "events.jsonl", redact=redactor)
    providers = build_providers(first, options, urls)
    pauses: list[dict[str, Any]] = []
    stop = threading.Event()
    original_emit = log.emit

    def emit(event: str, *args: object, **kw: object) -> None:
        original_emit(event, *args, **kw)  # type: ignore[arg-type]
        if event == "step.paused":
            pauses.append(dict(kw))
            stop.set()  # the test ends the run here: the cap allows tomorrow

    log.emit = emit  # type: ignore[method-assign]
    try:
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
    finally:
        for p in providers.values():
            p.close()
        sandbox.stop()
        log.close()
        journal.close()
