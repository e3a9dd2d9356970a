"""A recipients file that is not in the encoding it is read with: a Latin-1
export read as UTF-8 (the default) is one line naming the file, the line and
the byte, with the fix, and exit 1 in ``validate``, ``preview`` and ``run``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from runkit import MAILUP_ENV, cli, copy_campaign, edit, journal_rows, standalone_sandbox

from runner.cli import main

MESSAGE = (
    "contacts.csv:57: not UTF-8 (byte 0xe9); if the file is Latin-1, add "
    "encoding: latin-1 to recipients"
)


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    """The MailUp example sending to 80 people from a Latin-1 file whose first
    accent is on line 57 (row 56: 'José')."""
    names = ["Ana", "Luis", "Marta"] * 30
    rows = ["phone,name,lang"] + [
        f"+3462{i:07d},{'José Núñez' if i == 55 else names[i]} {i},es" for i in range(80)
    ]
    (tmp_path / "contacts.csv").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    path = copy_campaign("mailup-spring-promo.yaml", tmp_path)

    def apply(data: dict[str, Any]) -> None:
        data["recipients"] = {"file": "contacts.csv"}
        data["steps"] = [
            {"id": "blast", "send": {"provider": "mailup", "template": "promo"}}
        ]

    edit(path, apply)
    return path


def latin1(campaign: Path) -> None:
    edit(campaign, lambda d: d["recipients"].update(encoding="latin-1"))


def test_validate_names_the_line_and_the_fix(
    campaign: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var, value in MAILUP_ENV.items():
        monkeypatch.setenv(var, value)
    assert main(["validate", str(campaign)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    where, _, message = out[0].partition(" recipients.file: ")
    assert where.startswith(f"{campaign}:") and message == MESSAGE
    latin1(campaign)
    assert main(["validate", str(campaign)]) == 0
    assert capsys.readouterr().out == f"{campaign}: valid\n"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_preview_is_one_line_and_exit_1(campaign: Path, workers: str) -> None:
    # in its own process, so that two workers are forked (no test threads there)
    env = {**os.environ, "CAMPAIGN_RUNNER_WORKERS": workers}
    r = cli("preview", str(campaign), env=env)
    assert r.returncode == 1
    assert r.stderr == f"campaign-runner: {MESSAGE}\n"
    latin1(campaign)
    r = cli("preview", str(campaign), "--limit", "80", env=env)
    assert r.returncode == 0, r.stderr
    assert "Hola José, " in r.stdout and "80 accepted" in r.stdout


def test_run_fails_the_step_before_sending_and_sends_once_fixed(
    tmp_path: Path, campaign: Path
) -> None:
    state = tmp_path / "j.db"
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        r = cli("run", str(campaign), "--now", "--state", str(state), env=MAILUP_ENV)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"  blast: FAILED - {MESSAGE}" in r.stdout.splitlines(), r.stdout
        assert "Traceback" not in r.stdout + r.stderr
        assert sb.calls() == [] and not any(sb.messages().values())
        latin1(campaign)
        r = cli("run", str(campaign), "--now", "--state", str(state), env=MAILUP_ENV)
        assert r.returncode == 0, r.stdout + r.stderr
        received = sb.messages()["mailup"]
    assert len(received) == 80
    _, rows = journal_rows(state)
    assert sum("José" in m["text"] for m in rows if m["status"] == "sent") == 1
