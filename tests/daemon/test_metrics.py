"""/metrics and /healthz: figures computed from the journal, served on 127.0.0.1."""

from __future__ import annotations

import io
import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runner.daemon.health import Health
from runner.daemon.http import MetricsServer, parse_address
from runner.daemon.logs import LogEcho, SharedRedactor, human_line
from runner.daemon.metrics import build_registry
from runner.errors import UsageError
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.writer import Outcome, Planned
from runner.model.secrets import Redactor


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


def fill(j: Journal) -> str:
    """One run: 5 messages over two providers, with retries and two finished steps."""
    run = j.start_run("promo", "/c/promo.yaml", {})
    phones = [f"+3460000{i:04d}" for i in range(5)]
    j.start_step(run, "blast", "send")
    j.writer.plan(
        [Planned(run, "blast", p, i, "main", "hi", 1, i) for i, p in enumerate(phones)]
    )
    j.writer.claim(run, "blast", "main", "me#1", -1, 3)
    j.writer.claim(run, "blast", "backup", "me#1", 2, 1)
    j.writer.record_outcome(Outcome(run, "blast", phones[0], "sent", "main", 3))
    j.writer.record_outcome(Outcome(run, "blast", phones[1], "failed", "main", 1))
    j.writer.record_outcome(Outcome(run, "blast", phones[2], "sent", "main", 2))
    j.writer.record_outcome(Outcome(run, "blast", phones[3], "sent", "backup", 1))
    j.writer.flush()  # phones[4] stays queued
    j.finish_step(run, "blast", "succeeded", {}, "send")
    j.start_step(run, "credits", "check_credits")
    j.finish_step(run, "credits", "succeeded", {}, "check_credits")
    return run


def scrape(j: Journal, health: Health) -> dict[str, list]:
    text = generate_latest(build_registry(j, lambda: health)).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_message_and_retry_figures_equal_the_journal(journal: Journal) -> None:
    run = fill(journal)
    m = scrape(journal, Health(scheduler_running=True))
    outcomes = {
        (s.labels["provider"], s.labels["outcome"]): s.value
        for s in m["campaign_runner_messages"]
    }
    assert {s.labels["mode"] for s in m["campaign_runner_messages"]} == {"real"}
    rows = journal.messages_for(run)
    expected: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (r["provider"], r["status"])
        expected[key] = expected.get(key, 0) + 1
    assert outcomes == expected
    assert sum(outcomes.values()) == sum(journal.message_counts(run).values()) == 5
    retries = {s.labels["provider"]: s.value for s in m["campaign_runner_retries"]}
    assert retries == {"main": 3.0, "backup": 0.0}  # (3-1) + (2-1)
    assert {s.labels["campaign"] for s in m["campaign_runner_messages"]} == {"promo"}


def test_messages_and_retries_are_labelled_by_campaign(journal: Journal) -> None:
    fill(journal)  # promo: 5 messages, on main and backup
    run = journal.start_run("winter", "/c/winter.yaml", {})
    journal.start_step(run, "blast", "send")
    journal.writer.plan(
        [Planned(run, "blast", f"+3461000{i:04d}", i, "main", "hi", 1, i) for i in (1, 2)]
    )
    journal.writer.claim(run, "blast", "main", "me#1", -1, 2)
    for i in (1, 2):
        journal.writer.record_outcome(
            Outcome(run, "blast", f"+3461000{i:04d}", "sent", "main", 2)
        )
    journal.writer.flush()
    m = scrape(journal, Health(scheduler_running=True))
    sent = {
        (s.labels["campaign"], s.labels["provider"]): s.value
        for s in m["campaign_runner_messages"]
        if s.labels["outcome"] == "sent"
    }
    assert sent == {
        ("promo", "main"): 2.0,
        ("promo", "backup"): 1.0,
        ("winter", "main"): 2.0,
    }
    retries = {
        (s.labels["campaign"], s.labels["provider"]): s.value
        for s in m["campaign_runner_retries"]
    }
    assert retries == {
        ("promo", "main"): 3.0,
        ("promo", "backup"): 0.0,
        ("winter", "main"): 2.0,
    }


def test_rehearsal_messages_are_counted_apart(journal: Journal) -> None:
    fill(journal)
    run = journal.start_run("promo", "/c/promo.yaml", {}, sandbox="http://127.0.0.1:1")
    journal.start_step(run, "blast", "send")
    journal.writer.plan([Planned(run, "blast", "+34600009999", 0, "main", "hi", 1, 0)])
    journal.writer.flush()
    m = scrape(journal, Health(scheduler_running=True))
    queued = {
        s.labels["mode"]: s.value
        for s in m["campaign_runner_messages"]
        if s.labels["outcome"] == "queued"
    }
    assert queued == {"real": 1.0, "sandbox": 1.0}


def test_step_durations_histogram_counts_finished_steps(journal: Journal) -> None:
    fill(journal)
    journal.start_step(journal.start_run("x", "/c/x.yaml", {}), "never", "send")
    m = scrape(journal, Health(scheduler_running=True))
    counts = {
        s.labels["kind"]: s.value
        for s in m["campaign_runner_step_duration_seconds"]
        if s.name.endswith("_count")
    }
    assert counts == {"send": 1.0, "check_credits": 1.0}  # the unfinished one is not
    inf = [
        s
        for s in m["campaign_runner_step_duration_seconds"]
        if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"
    ]
    assert [s.value for s in inf] == [1.0, 1.0]


def test_live_gauges_come_from_the_daemon_snapshot(journal: Journal) -> None:
    health = Health(
        scheduler_running=True,
        campaigns=2,
        active_runs=("promo",),
        next_fire={("promo", "promo.yaml"): 1_800_000_000.0},
    )
    m = scrape(journal, health)
    assert [s.value for s in m["campaign_runner_active_runs"]] == [1.0]
    assert [s.value for s in m["campaign_runner_scheduler_up"]] == [1.0]
    fire = m["campaign_runner_next_fire_time_seconds"]
    assert [(s.labels["campaign"], s.labels["file"], s.value) for s in fire] == [
        ("promo", "promo.yaml", 1_800_000_000.0)
    ]


def test_http_server_serves_healthz_and_metrics(journal: Journal) -> None:
    fill(journal)
    state = {"health": Health(scheduler_running=True, campaigns=1)}
    server = MetricsServer("127.0.0.1:0", journal, lambda: state["health"]).start()
    try:
        r = requests.get(server.url + "/healthz", timeout=5)
        assert r.status_code == 200
        assert r.json() == {
            "ok": True,
            "role": "leader",
            "scheduler": "running",
            "stopping": False,
            "campaigns": 1,
            "active_runs": 0,
            "running": [],
            "daemons": [],  # none has beaten on this journal
        }
        state["health"] = Health(scheduler_running=True, stopping=True)
        r = requests.get(server.url + "/healthz", timeout=5)
        assert r.status_code == 503 and r.json()["ok"] is False
        r = requests.get(server.url + "/metrics", timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert (
            'campaign_runner_messages{campaign="promo",mode="real",outcome="sent",'
            'provider="main"} 2.0' in r.text
        )
        assert "process_cpu_seconds_total" not in r.text  # a private registry
        assert requests.get(server.url + "/other", timeout=5).status_code == 404
    finally:
        server.stop()


@pytest.mark.parametrize(
    "text", ["9464", "127.0.0.1", "127.0.0.1:http", ":9464", "h:99999"]
)
def test_bad_http_address_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="expected HOST:PORT"):
        parse_address(text)


def test_ipv6_address_and_a_busy_port(journal: Journal) -> None:
    assert parse_address("[::1]:9464") == ("::1", 9464)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match=f"127.0.0.1:{port}: cannot listen"):
            MetricsServer(f"127.0.0.1:{port}", journal, lambda: Health(True))


# -- the daemon's log lines ------------------------------------------------------------


def test_human_lines_carry_the_event_and_its_fields() -> None:
    line = json.dumps(
        {
            "ts": "2026-11-23T08:00:01.123+00:00",
            "event": "run.started",
            "run": "r1",
            "campaign": "spring-promo",
            "folders": ["/a"],
        }
    )
    assert human_line(line, UTC) == (
        "2026-11-23 08:00:01+00:00 run.started run=r1 campaign=spring-promo "
        'folders=["/a"]\n'
    )
    assert human_line(json.dumps({"ts": "x", "event": "message.sent"})) == ""
    invalid = {
        "ts": "x",
        "event": "campaign.invalid",
        "path": "b.yaml",
        "problems": ["p"],
    }
    assert human_line(json.dumps(invalid)) == "x campaign.invalid path=b.yaml\n"


def test_human_lines_are_in_the_local_zone_with_its_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = json.dumps({"ts": "2026-07-01T08:00:01.5+00:00", "event": "run.started"})
    assert human_line(line, ZoneInfo("America/Caracas")) == (
        "2026-07-01 04:00:01-04:00 run.started\n"
    )
    # the machine's zone by default (here, summer in Madrid)
    monkeypatch.setenv("TZ", "Europe/Madrid")
    time.tzset()
    try:
        assert human_line(line) == "2026-07-01 10:00:01+02:00 run.started\n"
        winter = json.dumps({"ts": "2026-12-01T08:00:00+00:00", "event": "x"})
        assert human_line(winter) == "2026-12-01 09:00:00+01:00 x\n"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_the_daemon_text_echo_writes_the_zone(tmp_path: Path) -> None:
    out = io.StringIO()
    log = EventLog(tmp_path / "events.jsonl")
    log.listen(LogEcho(out, human=True, tz=ZoneInfo("Asia/Kolkata")))
    log.emit("daemon.started", pid=1)
    log.close()
    shown = out.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+05:30 daemon.started .*pid=1.*\n", shown
    ), shown


def test_one_event_log_hides_the_secrets_of_every_run(tmp_path: Path) -> None:
    shared = SharedRedactor()
    out = io.StringIO()
    log = EventLog(tmp_path / "events.jsonl", redact=shared)
    log.listen(LogEcho(out, human=False))
    shared.include(Redactor(["first-s3cret"]))
    shared.include(Redactor(["second-s3cret"]))
    log.emit("run.error", error="refused first-s3cret and second-s3cret")
    log.close()
    written = (tmp_path / "events.jsonl").read_text()
    assert json.loads(out.getvalue())["error"] == "refused *** and ***"
    assert out.getvalue() == written  # the echo is the file's line, flushed at once
