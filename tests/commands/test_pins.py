"""Issue 19: PIN campaigns and fired messages (Ogangi), through the CLI on the
sandbox in its own process: one PIN per person, never shown, verified by hash."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import stat
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from runkit import cli, copy_campaign, edit, journal_rows, standalone_sandbox, start_cli

CAMPAIGN = "ogangi-verify-and-join.yaml"
ENV = {
    # the stand-ins the standalone sandbox accepts for unset credentials
    "OGANGI_PUBLIC_KEY": "sandbox-ogangi-public-key",
    "OGANGI_PRIVATE_KEY": "sandbox-ogangi-private-key",
    "MEMBERS_PIN_KEY": "k3y-of-the-pin-hashes",
}


def members(path: Path, n: int, rate: str = "500/s") -> None:
    """``n`` generated Venezuelan mobiles instead of the example's three."""
    csv = path.parent / "members.csv"
    csv.write_text(
        "phone,name\n"
        + "".join(f"+58412{1000000 + i:07d},Member {i}\n" for i in range(n))
    )

    def apply(data: dict) -> None:  # type: ignore[type-arg]
        data["recipients"] = {"file": "members.csv"}
        data["providers"]["ogangi"].update(rate=rate, concurrency=8)
        data["steps"][2]["check_report"]["every"] = "200ms"
        # long PINs: a 6-digit one can be any six digits of a phone or a run id
        data["steps"][0]["send"]["pin"]["length"] = 12

    edit(path, apply)


def verify(state: Path, ref: str, phone: str, pin: str, env: dict[str, str] = ENV) -> Any:
    return cli("pin", "verify", ref, phone, pin, "--state", str(state), env=env)


def everything_written(tmp_path: Path, *outputs: str) -> str:
    """Every output, file and journal row the runs left, as one text to grep."""
    parts = list(outputs)
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix in (".jsonl", ".log", ".txt"):
            parts.append(f.read_text(errors="replace"))
    with sqlite3.connect(tmp_path / "j.db") as db:
        parts.extend(db.iterdump())
    return "\n".join(parts)


@pytest.mark.slow
def test_pin_campaign_one_pin_each_verified_never_shown(tmp_path: Path) -> None:
    n = 100
    campaign = copy_campaign(CAMPAIGN, tmp_path)
    members(campaign, n)
    state, export = tmp_path / "j.db", tmp_path / "pins.csv"
    with standalone_sandbox(campaign, ENV) as sb:
        sb.point(campaign)
        r = cli(
            "run", str(campaign), "--now", "--state", str(state),
            "--export-pins", str(export), env=ENV,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        received = sb.messages()["ogangi"]
        run_id, rows = journal_rows(state)
        # a test send of the PIN step: a real PIN for the tester, verifiable too
        t = cli(
            "test", str(campaign), "--to", "+584129990001", "--state", str(state), env=ENV
        )
        assert t.returncode == 0, t.stdout + t.stderr
        tester = sb.messages()["ogangi"][-1]
    test_run = t.stdout.split("test run ")[1].split(":")[0]
    ok = verify(state, test_run, "+584129990001", tester["pin"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    pins = {m["to"]: m["pin"] for m in received if "pin" in m}
    # each member got one PIN message, with the template's text
    assert Counter(m["to"] for m in received if "pin" in m) == Counter(
        dict.fromkeys(pins, 1)
    )
    assert len(pins) == n
    assert {m["text"] for m in received} == {"Club Ávila: su código de verificación"}
    # fired: every member's "ALTA AVILA" came in as theirs, and the report saw it
    assert "join: ok - fired 100, failed 0" in r.stdout
    assert "repliers=100" in r.stdout
    assert Counter((m["step_id"], m["status"]) for m in rows) == {
        ("verify", "sent"): n,
        ("join", "sent"): n,
    }
    # the export: phone,pin for exactly what was sent, readable by its owner only
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    lines = export.read_text().splitlines()
    assert lines[0] == "phone,pin"
    assert {tuple(line.split(",")) for line in lines[1:]} == {
        ("+" + to, pin) for to, pin in pins.items()
    }
    # pin verify: yes for the right PIN (by run id or name), no for a wrong one
    to, pin = next(iter(pins.items()))
    ok = verify(state, run_id, "+" + to, pin)
    assert ok.returncode == 0 and ok.stdout.startswith("yes"), ok.stdout + ok.stderr
    wrong = str((int(pin) + 1) % 10**12).zfill(12)
    no = verify(state, "member-onboarding", "+" + to, wrong)
    assert no.returncode == 1 and no.stdout.startswith("no"), no.stdout + no.stderr
    # without the key, no answer at all (not a "no" that looks like a wrong PIN)
    keyless = {k: v for k, v in {**os.environ, **ENV}.items() if k != "MEMBERS_PIN_KEY"}
    nokey = verify(state, run_id, "+" + to, pin, keyless)
    assert nokey.returncode == 2 and "MEMBERS_PIN_KEY is not set" in nokey.stderr
    # no PIN anywhere we write: screen, event log, journal
    export.unlink()
    written = everything_written(tmp_path, r.stdout, r.stderr, t.stdout, ok.stdout)
    leaked = [
        p
        for p in [*pins.values(), tester["pin"]]
        if re.search(rf"(?<![0-9]){p}(?![0-9])", written)
    ]
    assert leaked == []


def test_pin_verify_other_answers(tmp_path: Path) -> None:
    campaign = copy_campaign(CAMPAIGN, tmp_path)
    state = tmp_path / "j.db"
    env = {"MEMBERS_PIN_KEY": "k3y"}
    r = cli("run", str(campaign), "--sandbox", "--now", "--state", str(state), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    base = ["pin", "verify", "member-onboarding"]
    never = cli(*base, "+584121239999", "123456", "--state", str(state), env=env)
    assert never.returncode == 1
    run_id = journal_rows(state)[0]
    assert never.stdout == f"no: run {run_id} sent no PIN to +58******9999\n"
    unknown = cli("pin", "verify", "nope", "+584121234501", "1", "--state", str(state))
    assert unknown.returncode == 2 and "no run or campaign 'nope'" in unknown.stderr
    bad = cli(*base, "12", "1", "--state", str(state), env=env)
    assert bad.returncode == 2 and "PHONE '12'" in bad.stderr
    age = cli(*base, "+584121234501", "1", "--max-age", "soon", "--state", str(state))
    assert age.returncode == 2 and "--max-age" in age.stderr


def test_kill_9_mid_pin_send_then_plain_rerun_sends_no_second_pin(tmp_path: Path) -> None:
    n = 100
    campaign = copy_campaign(CAMPAIGN, tmp_path)
    members(campaign, n, rate="40/s")
    edit(campaign, lambda d: d["steps"].__delitem__(slice(1, None)))  # the PINs only
    state = tmp_path / "j.db"
    args = ["run", str(campaign), "--now", "--state", str(state)]
    with standalone_sandbox(campaign, ENV) as sb:
        sb.point(campaign)
        proc = start_cli(*args, env=ENV)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(sb.messages()["ogangi"]) < 30:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        before = len(sb.messages()["ogangi"])
        assert 30 <= before < n
        again = cli(*args, env=ENV, timeout=120)  # the same command, once more
        received = sb.messages()["ogangi"]
    per_number = Counter("+" + m["to"] for m in received)
    assert max(per_number.values()) == 1, "someone got two PINs"
    _, rows = journal_rows(state)
    status = {m["phone"]: m["status"] for m in rows}
    # the calls under way at the kill are unknown (their PIN may be out) and
    # never repeated; everyone else got theirs
    assert set(status.values()) <= {"sent", "unknown"} and len(status) == n
    sent = {p for p, s in status.items() if s == "sent"}
    assert sent <= set(per_number) <= set(status)
    unknown = n - len(sent)
    # only the calls under way (at most the concurrency), not a claimed batch
    assert unknown <= 8
    assert again.returncode == (4 if unknown else 0), again.stdout + again.stderr


def test_validate_refuses_pins_and_fires_a_provider_cannot_make(tmp_path: Path) -> None:
    campaign = copy_campaign(CAMPAIGN, tmp_path)

    def mailup(data: dict) -> None:  # type: ignore[type-arg]
        data["providers"]["mu"] = {
            "type": "mailup",
            "account_id": 1,
            "list_id": 1,
            "list_guid": "0c7a4b42-3a4c-4ef0-9b8d-1b6f2e9d7a11",
            "list_secret": "${MAILUP_LIST_SECRET}",
        }
        data["steps"][0]["send"]["provider"] = "mu"
        data["steps"][1]["fire"]["provider"] = "mu"
        data["steps"][0]["send"]["pin"]["length"] = 3

    edit(campaign, mailup)
    r = cli("validate", str(campaign))
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "steps[0].send.provider: provider 'mu' (mailup) cannot send PINs" in out
    assert "steps[1].fire.provider: provider 'mu' (mailup) cannot fire messages" in out
    assert "warning: a PIN of 3 characters is easy to guess" in out


def test_a_fire_step_with_a_descriptor_posts_it_and_its_report_sees_the_mos(
    tmp_path: Path,
) -> None:
    campaign = copy_campaign(CAMPAIGN, tmp_path)

    def descriptor(data: dict) -> None:  # type: ignore[type-arg]
        data["steps"][1]["fire"]["descriptor"] = {"channel": "web"}
        data["steps"][2]["check_report"]["every"] = "200ms"

    edit(campaign, descriptor)
    state = tmp_path / "j.db"
    r = cli("run", str(campaign), "--sandbox", "--now", "--state", str(state))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "join: ok - fired 3, failed 0" in r.stdout
    assert "repliers=3, replies=3" in r.stdout
    _, rows = journal_rows(state)
    assert {m["text"] for m in rows if m["step_id"] == "join"} == {"ALTA AVILA"}
    # history counts the fired messages apart from the texts sent
    h = cli("history", "--state", str(state), "--format", "json")
    [run] = json.loads(h.stdout)
    assert (run["sent"], run["fired"], run["counts"]["sent"]) == (3, 3, 6)
