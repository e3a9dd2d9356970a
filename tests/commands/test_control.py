"""pause, resume and cancel from another terminal, on a run sending for real
(the sandbox in its own process, every command a real CLI process)."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from runkit import (
    MAILUP_ENV,
    StandaloneSandbox,
    cli,
    copy_campaign,
    edit,
    standalone_sandbox,
    start_cli,
)

from runner.journal.journal import Journal
from runner.journal.where import locate

N = 600


def many(path: Path, n: int) -> None:
    rows = ["phone,name,lang"] + [f"+3462{i:07d},Name {i},es" for i in range(n)]
    (path.parent / "many.csv").write_text("\n".join(rows) + "\n")

    def apply(data: dict[str, Any]) -> None:
        data["recipients"] = {"file": "many.csv"}
        data["providers"]["mailup"].update(rate="100/s", concurrency=4)
        data["steps"] = [s for s in data["steps"] if "send" in s]

    edit(path, apply)


@pytest.fixture(params=["sqlite", "postgresql"])
def sending(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Path, str, StandaloneSandbox]]:
    """A campaign of N pointed at a standalone sandbox, and a journal (a SQLite
    file, or a PostgreSQL database: the same commands, the same guarantees)."""
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many(campaign, N)
    state = str(tmp_path / "j.db")
    if request.param == "postgresql":
        state = request.getfixturevalue("pg_url")
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        yield campaign, state, sb


def wait_for(sb: StandaloneSandbox, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(sb.messages()["mailup"]) < count:
        time.sleep(0.05)
    assert len(sb.messages()["mailup"]) >= count


def control(state: Path | str) -> tuple[str, str | None, float]:
    """(run id, its status, the time of its last pause/resume/cancel request)."""
    j = Journal(locate(str(state)))
    try:
        run = j.list_runs(limit=1)[0]
        at = j.control_of(run["id"]).at
        assert at is not None
        return run["id"], run["status"], datetime.fromisoformat(at).timestamp()
    finally:
        j.close()


def counts(state: Path | str, run_id: str) -> dict[str, int]:
    j = Journal(locate(str(state)))
    try:
        return j.message_counts(run_id)
    finally:
        j.close()


def started_after(sb: StandaloneSandbox, t: float) -> int:
    return sum(1 for m in sb.messages()["mailup"] if m["at"] > t)


@contextmanager
def running(campaign: Path, state: str) -> Iterator[subprocess.Popen[str]]:
    """``run`` of the campaign in its own process, killed at the end if still on."""
    proc = start_cli("run", str(campaign), "--now", "--state", state, env=MAILUP_ENV)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.slow
def test_pause_from_another_terminal_then_resume_sends_the_rest_once(
    sending: tuple[Path, str, StandaloneSandbox],
) -> None:
    campaign, state, sb = sending
    with running(campaign, state) as proc:
        wait_for(sb, 150)
        paused = cli("pause", "spring-promo", "--state", str(state))
        assert paused.returncode == 0, paused.stderr
        lines = paused.stdout.splitlines()
        assert "pausing; its run pid" in lines[0]
        assert lines[1].startswith(lines[1].split(":")[0] + ": paused [")
        run_id, status, at = control(state)
        assert status == "paused"
        time.sleep(2.0)
        assert started_after(sb, at + 1.0) == 0  # no call started after the pause
        before = len(sb.messages()["mailup"])
        assert before < N
        shown = cli("status", "--state", str(state))
        assert f"{run_id}  spring-promo  real  paused" in shown.stdout
        assert "paused by " in shown.stdout and "owner: run pid" in shown.stdout
        resumed = cli("resume", run_id, "--state", str(state))
        assert resumed.returncode == 0, resumed.stderr
        code, out, err = finish(proc)
    assert code == 0, out + err
    to = Counter(m["to"] for m in sb.messages()["mailup"])
    assert len(to) == N and max(to.values()) == 1  # the rest, none twice
    assert counts(state, run_id) == {"sent": N}


@pytest.mark.slow
def test_cancel_from_another_terminal_ends_the_run_the_rest_cancelled(
    sending: tuple[Path, str, StandaloneSandbox],
) -> None:
    campaign, state, sb = sending
    with running(campaign, state) as proc:
        wait_for(sb, 150)
        r = cli("cancel", "spring-promo", "--state", str(state))
        assert r.returncode == 0, r.stderr
        code, out, err = finish(proc)
    run_id, status, at = control(state)
    assert (code, status) == (5, "cancelled"), out + err
    assert f"run {run_id}: cancelled" in out
    assert started_after(sb, at + 1.0) == 0
    c = counts(state, run_id)
    sent = len(sb.messages()["mailup"])
    assert c == {"sent": sent, "cancelled": N - sent}
    assert "cancelled by " in out and f"{N - sent} queued messages not sent" in out
    again = cli("run", str(campaign), "--state", str(state), env=MAILUP_ENV)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert f"its run {run_id} was cancelled by " in again.stderr
    assert len(sb.messages()["mailup"]) == sent  # nothing more went out


@pytest.mark.slow
def test_two_runs_started_at_once_send_once(
    sending: tuple[Path, str, StandaloneSandbox],
) -> None:
    campaign, state, sb = sending
    args = ("run", str(campaign), "--now", "--state", str(state))
    procs = [start_cli(*args, env=MAILUP_ENV) for _ in range(2)]
    results = [finish(p) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert "is being sent by " in refused and refused.count("\n") == 1
    to = Counter(m["to"] for m in sb.messages()["mailup"])
    assert len(to) == N and max(to.values()) == 1


def test_control_of_what_is_not_running(tmp_path: Path) -> None:
    state = tmp_path / "j.db"
    missing = cli("pause", "spring-promo", "--state", str(state))
    assert missing.returncode == 2 and "no journal at" in missing.stderr
    done = cli(
        "run",
        "campaigns/mailup-spring-promo.yaml",
        "--sandbox",
        "--now",
        "--state",
        str(state),
    )
    assert done.returncode == 0, done.stderr
    for action in ("pause", "resume", "cancel"):
        r = cli(action, "spring-promo", "--state", str(state))
        assert r.returncode == 2 and r.stderr.count("\n") == 1
        assert "campaign 'spring-promo' has no unfinished run" in r.stderr
    r = cli("pause", "nope", "--state", str(state))
    assert r.returncode == 2 and "no run or campaign 'nope'" in r.stderr


def on_a_terminal(answer: str, *args: str, env: dict[str, str]) -> tuple[int, str]:
    """The CLI with a terminal (a pty) as its stdin, answering ``answer``."""
    import os
    import pty
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    os.close(follower)
    os.write(leader, answer.encode() + b"\n")
    out, _ = proc.communicate(timeout=60)
    os.close(leader)
    return proc.returncode, out


def test_a_real_send_that_may_not_be_meant_asks_on_a_terminal(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    edit(campaign, lambda d: d.update(steps=[s for s in d["steps"] if "send" in s]))
    state = tmp_path / "j.db"
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        args = ("run", str(campaign), "--now", "--state", str(state))
        code, out = on_a_terminal(
            "n", *args, env={**MAILUP_ENV, "CAMPAIGN_RUNNER_CONFIRM_ABOVE": "3"}
        )
        assert code == 1, out
        assert "sends for real to more than 3 recipients" in out
        assert "not confirmed: nothing was sent" in out
        assert sb.messages()["mailup"] == []
        code, out = on_a_terminal(
            "y", *args, env={**MAILUP_ENV, "CAMPAIGN_RUNNER_CONFIRM_ABOVE": "3"}
        )
        assert code == 0, out
        sent = len(sb.messages()["mailup"])
        assert sent > 3
        code, out = on_a_terminal("", *args, env=MAILUP_ENV)  # Enter: the default, no
        assert code == 1 and "already ran for real. Send to its recipients" in out
        code, out = on_a_terminal("", *args, "--yes", env=MAILUP_ENV)
        assert code == 0 and "[y/N]" not in out  # --yes: no question
        assert len(sb.messages()["mailup"]) == sent  # nobody new: nothing sent
    no_terminal = cli("run", str(campaign), "--sandbox", "--now", "--state", str(state))
    assert no_terminal.returncode == 0 and "[y/N]" not in no_terminal.stdout


def test_an_occurrence_is_sent_once_a_repeat_is_explicit(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)

    def hourly(data: dict[str, Any]) -> None:
        data["steps"] = [s for s in data["steps"] if "send" in s]
        data["schedule"] = {"cron": "0 * * * *"}

    edit(campaign, hourly)
    state = tmp_path / "j.db"
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        args = ("run", str(campaign), "--now", "--state", str(state))
        first = cli(*args, env=MAILUP_ENV)
        assert first.returncode == 0, first.stdout + first.stderr
        n = len(sb.messages()["mailup"])
        second = cli(*args, env=MAILUP_ENV)  # the same hour: the same occurrence
        assert second.returncode == 0, second.stdout + second.stderr
        assert "already ran for " in second.stdout
        assert len(sb.messages()["mailup"]) == n  # nothing twice
        named = cli(*args, "--occurrence", "resend-1", env=MAILUP_ENV)
        assert named.returncode == 0 and len(sb.messages()["mailup"]) == 2 * n
        named_again = cli(*args, "--occurrence", "resend-1", env=MAILUP_ENV)
        assert "already ran for resend-1" in named_again.stdout
        repeat = cli(*args, "--again", env=MAILUP_ENV)
        assert "a repeat on purpose: a new occurrence again-" in repeat.stdout
        assert repeat.returncode == 0 and len(sb.messages()["mailup"]) == 3 * n
    j = Journal(locate(str(state)))
    try:
        runs = j.list_runs(limit=10)
    finally:
        j.close()
    occurrences = [r["occurrence"] for r in reversed(runs)]
    assert len(occurrences) == 3 and occurrences[1] == "resend-1"
    assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:00\+0[12]:00", occurrences[0])  # Madrid
    assert occurrences[2].startswith("again-")


def test_control_of_a_run_whose_process_died(
    sending: tuple[Path, str, StandaloneSandbox],
) -> None:
    """kill -9 mid-send: pause holds it (run refuses), resume says how to go on,
    cancel ends it there and then: queued cancelled, maybe-sent unknown."""
    campaign, state, sb = sending
    with running(campaign, state) as proc:
        wait_for(sb, 150)
        proc.kill()
        proc.communicate(timeout=30)
    paused = cli("pause", "spring-promo", "--state", state)
    assert paused.returncode == 0, paused.stderr
    assert "paused: no process is running it now" in paused.stdout
    again = cli("run", str(campaign), "--now", "--state", state, env=MAILUP_ENV)
    assert again.returncode == 2 and "is paused (by " in again.stderr
    resumed = cli("resume", "spring-promo", "--state", state)
    assert f"continue it with `campaign-runner run {campaign}`" in resumed.stdout
    cancelled = cli("cancel", "spring-promo", "--state", state)
    assert cancelled.returncode == 0, cancelled.stderr
    run_id, status, _ = control(state)
    assert status == "cancelled"
    c = counts(state, run_id)
    assert set(c) <= {"sent", "cancelled", "unknown"} and c["cancelled"] > 0
    assert f"cancelled: {c['cancelled']} queued messages will not be sent" in (
        cancelled.stdout
    )
    assert sum(c.values()) == N
    sent = len(sb.messages()["mailup"])
    assert c["sent"] + c.get("unknown", 0) >= sent  # none unaccounted for
