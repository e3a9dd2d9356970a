"""`campaign-runner run` end to end: the real CLI, real HTTP on 127.0.0.1, the journal."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

from runkit import (
    MAILUP_ENV,
    cli,
    copy_campaign,
    edit,
    events,
    journal_rows,
    many_recipients,
    standalone_sandbox,
    start_cli,
)


def test_multi_step_rehearsal_on_the_sandbox(tmp_path: Path) -> None:
    state = tmp_path / "journal.db"
    r = cli(
        "run", "campaigns/black-friday.yaml", "--sandbox", "--now", "--state", str(state)
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "run " in r.stdout and "succeeded" in r.stdout
    run_id, rows = journal_rows(state)
    by_step = Counter((m["step_id"], m["status"]) for m in rows)
    # gold and silver members only (where:), both sends, all delivered
    assert by_step == {("teaser", "sent"): 3, ("offer", "sent"): 3}
    assert all(m["provider_message_id"] for m in rows)
    delivered = [m for m in rows if m["step_id"] == "offer"]
    assert {m["delivery_status"] for m in delivered} == {"delivered"}
    log = events(tmp_path / "events.jsonl")
    kinds = [e["event"] for e in log]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished"
    assert kinds.count("message.sent") == 6
    sent = next(e for e in log if e["event"] == "message.sent")
    assert (
        sent["to"].count("*") >= 4 and sent["run"] == run_id and sent["step"] == "teaser"
    )


def test_send_reaches_the_provider_exactly_once_and_the_journal_agrees(
    tmp_path: Path,
) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, 300)
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        state = tmp_path / "j.db"
        r = cli("run", str(campaign), "--now", "--state", str(state), env=MAILUP_ENV)
        assert r.returncode == 0, r.stdout + r.stderr
        received = sb.messages()["mailup"]
    _, rows = journal_rows(state)
    assert len(received) == 300
    assert Counter(m["to"] for m in received).most_common(1)[0][1] == 1
    journal = {
        m["phone"].lstrip("+"): m["provider_message_id"]
        for m in rows
        if m["status"] == "sent"
    }
    assert journal == {m["to"]: m["id"] for m in received}


def test_failing_credit_check_sends_nothing(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path, sandbox={"credits": 3})
    state = tmp_path / "j.db"
    r = cli("run", str(campaign), "--sandbox", "--now", "--state", str(state))
    assert r.returncode == 1
    assert "credits: FAILED - 3 credits available, 11 required" in r.stdout
    _, rows = journal_rows(state)
    assert rows == []


def test_report_threshold_not_met_exits_1(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, 20, failing=5)  # 15 of 20 delivered: 0.75 < 0.8
    edit(campaign, lambda d: d["steps"][2].update(on_failure="abort"))
    state = tmp_path / "j.db"
    r = cli("run", str(campaign), "--sandbox", "--now", "--state", str(state))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not met: delivered ratio 0.750 (15 delivered of 20 sent) < 0.8" in r.stdout
    _, rows = journal_rows(state)
    assert Counter(m["delivery_status"] for m in rows) == {"delivered": 15, "failed": 5}


def test_bad_credentials_stop_the_step_after_the_first_answer(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, 200)
    edit(campaign, lambda d: d["steps"].pop(0))  # no credit check: straight to sending
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        state = tmp_path / "j.db"
        wrong = {**MAILUP_ENV, "MAILUP_LIST_SECRET": "not-the-secret"}
        r = cli("run", str(campaign), "--now", "--state", str(state), env=wrong)
        sends = [c for c in sb.calls() if c["method"] == "POST" and c["status"] != 200]
    assert r.returncode == 1
    assert len(sends) == 1  # one answer, then the step stopped
    assert "blast: FAILED" in r.stdout and "200 not sent" in r.stdout
    assert "not-the-secret" not in r.stdout + r.stderr


def test_ctrl_c_mid_send_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, 400)
    edit(campaign, lambda d: d["providers"]["mailup"].update(rate="100/s", concurrency=4))
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        state = tmp_path / "j.db"
        proc = start_cli(
            "run", str(campaign), "--now", "--state", str(state), env=MAILUP_ENV
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(sb.messages()["mailup"]) < 50:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        _, rows = journal_rows(state)
        statuses = Counter(m["status"] for m in rows)
        assert statuses["pending"] == 0 and 0 < statuses["sent"] < 400
        assert statuses["sent"] == len(sb.messages()["mailup"])
        r = cli(
            "run",
            str(campaign),
            "--now",
            "--resume",
            "--state",
            str(state),
            env=MAILUP_ENV,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        received = sb.messages()["mailup"]
    assert len(received) == 400
    assert len({m["to"] for m in received}) == 400


def test_the_same_command_after_kill_9_continues_the_run(tmp_path: Path) -> None:
    """Issue 14's first case: no --resume, yet nobody gets the message twice."""
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, 400)
    edit(campaign, lambda d: d["providers"]["mailup"].update(rate="100/s", concurrency=4))
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        state = tmp_path / "j.db"
        command = ("run", str(campaign), "--now", "--state", str(state))
        proc = start_cli(*command, env=MAILUP_ENV)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(sb.messages()["mailup"]) < 50:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        r = cli(*command, env=MAILUP_ENV)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "has an unfinished run" in r.stdout and "continuing it" in r.stdout
        received = sb.messages()["mailup"]
    assert len(received) == 400
    assert len({m["to"] for m in received}) == 400


def test_a_finished_campaign_run_again_sends_only_to_new_rows(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, 30)
    edit(campaign, lambda d: d["steps"].pop(0))  # the send, then its report
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        state = tmp_path / "j.db"
        command = ("run", str(campaign), "--now", "--state", str(state))
        assert cli(*command, env=MAILUP_ENV).returncode == 0
        posts = lambda: [c for c in sb.calls() if c["method"] == "POST"]  # noqa: E731
        before = len(posts())
        r = cli(*command, env=MAILUP_ENV)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "already ran" in r.stdout and "30 sent" in r.stdout
        assert len(posts()) == before  # nothing sent again
        csv = tmp_path / "many.csv"
        with csv.open("a") as f:
            for i in range(10):
                f.write(f"+3469900{i:04d},New {i},es\n")
        r = cli(*command, env=MAILUP_ENV)
        assert r.returncode == 0, r.stdout + r.stderr
        received = sb.messages()["mailup"]
    assert len(received) == 40 and len({m["to"] for m in received}) == 40
    _, rows = journal_rows(state)
    assert len(rows) == 40 and {m["status"] for m in rows} == {"sent"}


def test_a_real_delay_is_waited_for(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    edit(campaign, lambda d: d["steps"][2].update(after="2s"))
    state = tmp_path / "j.db"
    r = cli("run", str(campaign), "--sandbox", "--state", str(state))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "delivery: waiting until" in r.stdout
    from runner.journal.journal import Journal

    j = Journal(state)
    steps = j.step_status(j.list_runs(limit=1)[0]["id"])
    j.close()
    from datetime import datetime

    gap = datetime.fromisoformat(
        steps["delivery"]["started_at"]
    ) - datetime.fromisoformat(steps["blast"]["finished_at"])
    assert gap.total_seconds() >= 1.9


def test_a_campaign_being_sent_elsewhere_is_refused_others_run_beside_it(
    tmp_path: Path,
) -> None:
    from runner.journal.journal import Journal

    state = tmp_path / "j.db"
    journal = Journal(state)
    # as a daemon, or a `run` in another terminal, sending spring-promo would
    assert journal.take_lease("spring-promo", "daemon") is None
    try:
        r = cli(
            "run",
            "campaigns/mailup-spring-promo.yaml",
            "--sandbox",
            "--now",
            "--state",
            str(state),
        )
        other = cli(
            "run",
            "campaigns/tatango-order-ready.yaml",
            "--sandbox",
            "--now",
            "--state",
            str(state),
        )
    finally:
        journal.release_lease("spring-promo")
        journal.close()
    assert r.returncode == 2
    assert r.stderr.startswith(
        f"campaign-runner: campaign 'spring-promo' is being sent by the daemon, pid "
        f"{os.getpid()} on {socket.gethostname()}, since "
    )
    assert r.stderr.endswith(
        f"pause or cancel it (campaign-runner pause spring-promo --state {state})\n"
    )
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "sandbox: emulators" not in r.stdout  # refused before anything started
    assert other.returncode == 0, other.stdout + other.stderr
