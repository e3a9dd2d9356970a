"""``campaign-runner test``: a recipient's real message to test numbers only, through
the sandbox in its own process; the real run afterwards is untouched by it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runkit import MAILUP_ENV, cli, copy_campaign, edit, journal_rows, standalone_sandbox

from runner.engine.plan import renderings
from runner.loader.load import load_campaign

TESTERS = ["+34699990001", "+34699990002"]


def texts(campaign: Path) -> list[tuple[str, str]]:
    loaded, _ = load_campaign(campaign, env={**os.environ, **MAILUP_ENV})
    return [
        (r.phone, r.text or "") for r in renderings(loaded, "promo") if r.error is None
    ]


def only_blast(data: dict[str, Any]) -> None:
    data["steps"] = [s for s in data["steps"] if s["id"] == "blast"]


def test_a_test_send_reaches_only_the_test_numbers_and_leaves_the_real_run_whole(
    tmp_path: Path,
) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    edit(campaign, only_blast)
    expected = texts(campaign)
    state = tmp_path / "j.db"
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        r = cli(
            "test",
            str(campaign),
            "--to",
            ",".join(TESTERS),
            "--recipient",
            "2",
            "--state",
            str(state),
            env=MAILUP_ENV,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        got = sb.messages()["mailup"]
        assert sorted("+" + m["to"] for m in got) == TESTERS  # nobody else
        assert {m["text"] for m in got} == {expected[1][1]}  # recipient 2's text
        assert "sent to 2" in r.stdout
        test_run, rows = journal_rows(state)
        assert {m["status"] for m in rows} == {"sent"}
        shown = cli("history", "--state", str(state))
        assert "test send" in shown.stdout

        real = cli("run", str(campaign), "--now", "--state", str(state), env=MAILUP_ENV)
        assert real.returncode == 0, real.stdout + real.stderr
        assert "unfinished" not in real.stdout and "already ran" not in real.stdout
        to = ["+" + m["to"] for m in sb.messages()["mailup"]]
        assert sorted(to[2:]) == sorted(p for p, _ in expected)  # everyone, once
        run_id, real_rows = journal_rows(state)
        assert run_id != test_run and len(real_rows) == len(expected)


def test_test_recipients_in_the_file_and_bad_numbers(tmp_path: Path) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    edit(campaign, only_blast)
    state = tmp_path / "j.db"
    none = cli("test", str(campaign), "--sandbox", "--state", str(state))
    assert none.returncode == 2 and none.stderr.count("\n") == 1
    assert "no number to send the test to" in none.stderr
    bad = cli(
        "test", str(campaign), "--sandbox", "--to", "+3469999", "--state", str(state)
    )
    assert bad.returncode == 2 and "--to '+3469999': not a phone number" in bad.stderr
    far = cli(
        "test",
        str(campaign),
        "--sandbox",
        "--to",
        TESTERS[0],
        "--recipient",
        "99",
        "--state",
        str(state),
    )
    n = len(texts(campaign))
    assert far.returncode == 2 and f"the campaign has {n} recipients" in far.stderr

    edit(campaign, lambda d: d.update(test_recipients=["699 990 001", "12"]))
    invalid = cli("validate", str(campaign))
    assert invalid.returncode == 1
    assert "test_recipients[1]: '12' is not a phone number to send to" in invalid.stdout
    edit(campaign, lambda d: d.update(test_recipients=["699 990 001"]))
    r = cli("test", str(campaign), "--sandbox", "--state", str(state))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "to +34699990001" in r.stdout and "sent to 1" in r.stdout
