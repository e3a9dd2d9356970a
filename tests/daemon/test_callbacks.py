"""Issue 19: Tatango report callbacks to the daemon's own endpoint, single-use."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path

import pytest
import requests
from runkit import cli, events
from test_daemon import (
    campaign_copy,
    edit,
    free_port,
    running_daemon,
    runs_of,
    soon,
    wait_for,
)

from runner.daemon.health import Health
from runner.daemon.http import CALLBACK_MAX, MetricsServer
from runner.journal.journal import Journal
from runner.journal.tables import callbacks


def test_a_tatango_report_completes_through_its_callback_before_the_next_poll(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    campaign = campaign_copy(
        "tatango-order-ready.yaml", folder, "pickups.yaml", schedule={"at": soon(1)}
    )

    def callback(data: dict) -> None:  # type: ignore[type-arg]
        report = data["steps"][1]
        report.pop("after")
        # a poll a minute: without the callback the report is read after 60 s
        report["check_report"].update(every="1m", timeout="5m", callback=True)
        data["providers"]["tatango"]["rate"] = "10/s"  # not 1,200 an hour: a test

    edit(campaign, callback)
    state = tmp_path / "journal.db"
    port = free_port()
    with running_daemon(
        tmp_path, folder, state, "--sandbox", "--http", f"127.0.0.1:{port}"
    ) as d:
        run = wait_for(
            lambda: next((r for r in runs_of(state) if r["finished_at"]), None),
            "the run finished",
            timeout=40,
        )
        events = d.events()
    assert run["status"] == "succeeded", d.stderr()
    j = Journal(state)
    try:
        step = j.step_status(run["id"])["momt"]
        with j.connect() as conn:
            issued = [dict(r) for r in conn.execute(callbacks.select()).mappings()]
    finally:
        j.close()
    took = datetime.fromisoformat(step["finished_at"]) - datetime.fromisoformat(
        step["started_at"]
    )
    assert took.total_seconds() < 20  # the callback, not the 60 s poll
    assert step["detail"]["polls"] == 2  # the report created, then read once called
    assert step["detail"]["final"] is True
    assert [e["event"] for e in events if e["event"].startswith("report.")].count(
        "report.callback"
    ) == 1
    assert len(issued) == 1 and issued[0]["received_at"] is not None
    assert issued[0]["step_id"] == "momt"


@pytest.fixture
def endpoint(tmp_path: Path):  # type: ignore[no-untyped-def]
    journal = Journal(tmp_path / "j.db")
    server = MetricsServer(
        f"127.0.0.1:{free_port()}", journal, lambda: Health(scheduler_running=True)
    ).start()
    try:
        yield journal, server.url
    finally:
        server.stop()
        journal.close()


def received(journal: Journal) -> list[tuple[str, int | None]]:
    with journal.connect() as conn:
        return [
            (r.received_at, r.size)
            for r in conn.execute(callbacks.select().order_by(callbacks.c.issued_at))
        ]


def test_the_callback_endpoint_takes_only_its_own_tokens_once(endpoint) -> None:  # type: ignore[no-untyped-def]
    journal, url = endpoint
    token = secrets.token_urlsafe(32)
    journal.issue_callback(token, "run-1", "report")
    # forged, oversized, or a GET of nothing: 404, nothing recorded
    forged = requests.post(f"{url}/callbacks/{secrets.token_urlsafe(32)}", timeout=5)
    assert forged.status_code == 404
    big = requests.post(
        f"{url}/callbacks/{token}", data=b"x" * (CALLBACK_MAX + 1), timeout=5
    )
    assert big.status_code == 404
    assert requests.post(f"{url}/callbacks/short", timeout=5).status_code == 404
    assert received(journal) == [(None, None)]
    # the token issued: taken once, its body's size kept (not the body)
    body = {"status": "OK", "momt_report": {"id": 7}}
    first = requests.post(f"{url}/callbacks/{token}", json=body, timeout=5)
    assert first.status_code == 200
    assert journal.callback_received(token)
    again = requests.post(f"{url}/callbacks/{token}", json=body, timeout=5)
    assert again.status_code == 404
    [(at, size)] = received(journal)
    assert at is not None and size == len(json.dumps(body))


def test_without_an_endpoint_the_report_is_polled(tmp_path: Path) -> None:
    campaign = campaign_copy("tatango-order-ready.yaml", tmp_path, "pickups.yaml")

    def callback(data: dict) -> None:  # type: ignore[type-arg]
        data["steps"][1].pop("after")
        data["steps"][1]["check_report"]["callback"] = True
        data["providers"]["tatango"]["rate"] = "10/s"

    edit(campaign, callback)
    r = cli("run", str(campaign), "--sandbox", "--now", "--state", str(tmp_path / "j.db"))
    assert r.returncode == 0, r.stdout + r.stderr
    log = events(tmp_path / "events.jsonl")
    assert [e["reason"] for e in log if e["event"] == "report.no_callback"] == [
        "no callback endpoint (the daemon's --callback-url): polling"
    ]


def test_validate_refuses_a_callback_the_provider_cannot_make(tmp_path: Path) -> None:
    campaign = campaign_copy("mailup-spring-promo.yaml", tmp_path, "spring.yaml")
    edit(campaign, lambda d: d["steps"][2]["check_report"].update(callback=True))
    r = cli("validate", str(campaign))
    assert r.returncode == 1
    assert (
        "check_report.callback: provider 'mailup' (mailup) does not call back when a "
        "report is ready" in r.stdout
    )
