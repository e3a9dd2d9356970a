"""Issue 6: never twice, never lost, never leaked; each promise a test that can fail."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import stat
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


def test_kill_9_again_and_again_then_resume_sends_each_recipient_exactly_once(
    tmp_path: Path,
) -> None:
    n = 5000
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, n)
    edit(campaign, lambda d: d["steps"].pop(0))  # straight to the send
    edit(
        campaign, lambda d: d["providers"]["mailup"].update(rate="2000/s", concurrency=16)
    )
    rng = random.Random(int(os.environ.get("KILL_SEED", "0")) or None)
    kills = 0
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        state = tmp_path / "j.db"
        args = ["run", str(campaign), "--now", "--state", str(state)]
        for attempt in range(4):
            proc = start_cli(*args, *(["--resume"] if attempt else []), env=MAILUP_ENV)
            # kill at a random point of the send, after some messages went out
            target = len(sb.messages()["mailup"]) + rng.randint(100, 900)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if len(sb.messages()["mailup"]) >= target:
                    break
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
        r = cli(*args, "--resume", env=MAILUP_ENV, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        received = sb.messages()["mailup"]
    assert kills >= 3
    per_number = Counter(m["to"] for m in received)
    assert len(per_number) == n, f"{n - len(per_number)} recipients never got the message"
    duplicates = [k for k, v in per_number.items() if v > 1]
    assert duplicates == []
    _, rows = journal_rows(state)
    assert Counter(m["status"] for m in rows) == {"sent": n}
    by_number = {m["to"]: m["id"] for m in received}
    for m in rows:
        if m["provider_message_id"] is None:
            # the answer was lost in a kill; the provider's report settled it
            assert m["error_detail"] == "reconciled from the provider's report"
        else:
            assert by_number[m["phone"].lstrip("+")] == m["provider_message_id"]


def test_twenty_percent_faults_end_with_every_recipient_settled(tmp_path: Path) -> None:
    n = 400
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, n)
    edit(
        campaign,
        lambda d: d["providers"]["mailup"].update(
            retry={
                "attempts": 6,
                "base_delay": "10ms",
                "max_delay": "200ms",
                "max_total": "30s",
            },
            timeout={"connect": "2s", "read": "500ms"},
        ),
    )
    faults = (
        "http_503=0.06,http_429=0.04,http_500=0.02,timeout=0.03,"
        "malformed=0.02,truncated=0.02,wrong_content_type=0.01"
    )  # 20% of all requests
    state = tmp_path / "j.db"
    r = cli(
        "run",
        str(campaign),
        "--sandbox",
        "--now",
        "--state",
        str(state),
        "--faults",
        faults,
        timeout=240,
    )
    _, rows = journal_rows(state)
    blast = [m for m in rows if m["step_id"] == "blast"]
    statuses = Counter(m["status"] for m in blast)
    # every recipient in a terminal state, with a reason when not sent
    assert sum(statuses.values()) == n
    assert set(statuses) <= {"sent", "failed"}, statuses
    assert all(
        m["error_kind"] and m["error_detail"] for m in blast if m["status"] == "failed"
    )
    # the exit status tells the truth about the steps
    expected = 0 if statuses["sent"] == n and "FAILED" not in r.stdout else 1
    assert r.returncode == expected, r.stdout + r.stderr
    log = events(tmp_path / "events.jsonl")
    retries = [e for e in log if e["event"] == "message.retry"]
    assert retries and all(e["attempt"] >= 1 and e["reason"] for e in retries)
    assert f"retries {len(retries)}" in r.stdout
    assert statuses["sent"] >= n * 0.97


def test_failover_moves_on_after_the_primary_fails_as_a_whole(tmp_path: Path) -> None:
    campaign = copy_campaign("black-friday.yaml", tmp_path)
    # only the offer step: mailup first, ogangi as the backup
    edit(
        campaign, lambda d: d.update(steps=[s for s in d["steps"] if s["id"] == "offer"])
    )
    edit(campaign, lambda d: d["steps"][0].pop("when"))
    env = {
        "MAILUP_CLIENT_ID": "id",
        "MAILUP_CLIENT_SECRET": "cs",
        "MAILUP_PASSWORD": "pw",
        "MAILUP_LIST_SECRET": "right",
        "OGANGI_PUBLIC_KEY": "pub",
        "OGANGI_PRIVATE_KEY": "priv",
        "TELLODY_PASSWORD": "tp",
    }
    state = tmp_path / "j.db"
    with standalone_sandbox(campaign, env) as sb:
        sb.point(campaign)
        # the runner holds a wrong list secret: MailUp refuses the account
        wrong = {**env, "MAILUP_LIST_SECRET": "wrong"}
        r = cli("run", str(campaign), "--now", "--state", str(state), env=wrong)
        received = sb.messages()
        refused = [c for c in sb.calls() if c["mount"] == "mailup" and c["status"] != 200]
    assert r.returncode == 0, r.stdout + r.stderr
    _, rows = journal_rows(state)
    assert Counter((m["provider"], m["status"]) for m in rows) == {("ogangi", "sent"): 3}
    assert received["mailup"] == [] and len(received["ogangi"]) == 3
    assert len(refused) == 1  # one refusal, then the whole step moved on
    assert "step.failover" in [e["event"] for e in events(tmp_path / "events.jsonl")]


SECRETS = {
    "MAILUP_CLIENT_ID": "cid-SECRET-a1b2c3",
    "MAILUP_CLIENT_SECRET": "cs-SECRET-d4e5f6",
    "MAILUP_PASSWORD": "pw-SECRET-g7h8i9",
    "MAILUP_LIST_SECRET": "ls-SECRET-j0k1l2",
}


def test_no_secret_anywhere_in_outputs(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, 30)
    state = tmp_path / "j.db"
    outputs = []
    with standalone_sandbox(campaign, SECRETS) as sb:
        sb.point(campaign)
        r = cli("run", str(campaign), "--now", "--state", str(state), env=SECRETS)
        outputs += [r.stdout, r.stderr]
        # and a failing run: a wrong secret answered by the provider
        wrong = {
            **SECRETS,
            "MAILUP_PASSWORD": "pw-SECRET-wrong-zz",
            "MAILUP_LIST_SECRET": "ls-SECRET-wrong-yy",
        }
        r2 = cli("run", str(campaign), "--now", "--state", str(state), env=wrong)
        outputs += [r2.stdout, r2.stderr]
    run_id = journal_rows(state)[0]
    for args in (
        ["history"],
        ["show", run_id],
        ["show", run_id, "--recipients", "--format", "json"],
    ):
        shown = cli(*args, "--state", str(state))
        outputs += [shown.stdout, shown.stderr]
    outputs.append((tmp_path / "events.jsonl").read_text())
    db = sqlite3.connect(state)
    outputs += [
        repr(row)
        for table in ("runs", "steps", "messages")
        for row in db.execute(f"select * from {table}")
    ]
    db.close()
    blob = "\n".join(outputs)
    assert "sent" in blob  # the outputs are real
    for secret in [*SECRETS.values(), "pw-SECRET-wrong-zz", "ls-SECRET-wrong-yy"]:
        assert secret not in blob
        assert secret[:10] not in blob  # not even a prefix of one
    assert not re.search(r"SECRET", blob)


def test_journal_and_log_are_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "j.db"
    r = cli(
        "run",
        "campaigns/mailup-spring-promo.yaml",
        "--sandbox",
        "--now",
        "--state",
        str(state),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for path in (state, tmp_path / "events.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    log = (tmp_path / "events.jsonl").read_text()
    assert not re.search(r"\+34\d{9}", log)  # phone numbers are masked by default
