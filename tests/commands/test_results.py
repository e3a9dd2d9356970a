"""Results you can query (issue 17): ``show`` with its filters and step times,
``why`` for one number, ``history``'s pending column and JSON that embeds
objects; on real runs against the sandbox, through the CLI."""

from __future__ import annotations

import csv
import io
import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from runkit import cli, copy_campaign, edit, journal_rows, start_cli

from runner.cli import main
from runner.journal.journal import Journal

SENT = "+34600000001"  # Ana, es
DUPLICATE = "+34600000002"  # José, and again in a later row
SUPPRESSED = "+34600000003"  # Laura, on the suppression list by hand
ENGLISH = "+34600000004"  # Peter, the en variant
FILTERED = "+34600000005"  # María José in Bilbao: where says no
EXCLUDED = "+34600000007"  # Lucía: in data/optout.txt
NOWHERE = "+34600000098"


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The spring promo's send step run once on the sandbox: an invalid row, a
    duplicate, an excluded number, one filtered out, one suppressed, the rest sent."""
    tmp = tmp_path_factory.mktemp("results")
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp)
    contacts = tmp / "data" / "spring-contacts.csv"
    contacts.write_text(contacts.read_text() + "+34 600 000 002,José again,en,Sevilla\n")

    def shape(data: dict[str, Any]) -> None:
        data["steps"] = [s for s in data["steps"] if "send" in s]
        data["recipients"]["where"] = "city != 'Bilbao'"

    edit(campaign, shape)
    state = tmp / "j.db"
    r = cli("suppress", "add", SUPPRESSED, "--reason", "asked", "--state", str(state))
    assert r.returncode == 0, r.stderr
    r = cli("run", str(campaign), "--sandbox", "--now", "--state", str(state))
    assert r.returncode == 0, r.stdout + r.stderr
    return state, journal_rows(state)[0]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def show_json(capsys: pytest.CaptureFixture[str], state: Path, *args: str) -> Any:
    code, out, err = run_cli(
        capsys, "show", *args, "--format", "json", "--state", str(state)
    )
    assert code == 0, err
    return json.loads(out)


def test_show_last_and_show_name_are_the_latest_run_with_step_times(
    ran: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, run_id = ran
    for which in ("last", "spring-promo", run_id):
        doc = show_json(capsys, state, which)
        assert doc["run"]["id"] == run_id
    (blast,) = doc["steps"]
    started = datetime.fromisoformat(blast["started_at"])
    finished = datetime.fromisoformat(blast["finished_at"])
    assert started <= finished
    assert blast["counts"] == {"sent": 4, "suppressed": 1}
    assert blast["detail"]["recipients"]["duplicates"] == 1  # an object, not text
    _, out, _ = run_cli(capsys, "show", "last", "--state", str(state))
    header = out.splitlines()[1].split()
    assert header[:5] == ["step", "kind", "status", "started_at", "finished_at"]
    row = out.splitlines()[2].split()
    assert row[3] == blast["started_at"] and row[4] == blast["finished_at"]


def test_show_filters_by_status_and_step_and_keeps_the_rows_left_out(
    ran: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, _ = ran
    left = show_json(
        capsys, state, "last", "--status", "invalid,duplicate", "--status", "excluded"
    )
    assert left["messages"] == []
    found = {(r["status"], r["phone"]): r["reason"] for r in left["skipped"]}
    assert found == {
        ("invalid", "*****"): "data/spring-contacts.csv:9: too short",
        ("duplicate", "+34*****0002"): "data/spring-contacts.csv:10: "
        "an earlier row has the same number",
        ("excluded", "+34*****0007"): "data/spring-contacts.csv:8: "
        "on an opt-out list (recipients.exclude)",
    }
    sent = show_json(capsys, state, "spring-promo", "--status", "sent", "--step", "blast")
    assert sent["skipped"] == []
    assert sorted(m["phone"] for m in sent["messages"]) == [
        "+34*****0001",
        "+34*****0002",
        "+34*****0004",
        "+34*****0006",
    ]
    held = show_json(capsys, state, "last", "--status", "suppressed", "--show-phones")
    (m,) = held["messages"]
    assert m["phone"] == SUPPRESSED
    assert m["reason"] == "suppressed: on the suppression list (manual)"
    filtered = show_json(capsys, state, "last", "--status", "filtered_out")
    assert [r["reason"] for r in filtered["skipped"]] == [
        "data/spring-contacts.csv:6: where: city != 'Bilbao'"
    ]
    for args, says in (
        (["--status", "delivered"], "--status 'delivered': not a status (one of queued"),
        (["--step", "nope"], "has no step 'nope' (steps: blast)"),
    ):
        code, out, err = run_cli(capsys, "show", "last", *args, "--state", str(state))
        assert code == 2 and out == "" and says in err and err.count("\n") == 1, err
    code, _, err = run_cli(capsys, "show", "autumn", "--state", str(state))
    assert code == 2 and "no run or campaign 'autumn' in" in err


def test_show_recipients_have_text_variant_status_and_reason(
    ran: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, _ = ran
    doc = show_json(capsys, state, "last", "--recipients", "--show-phones")
    by_phone = {m["phone"]: m for m in doc["messages"]}
    assert by_phone[ENGLISH]["variant"] == "en"
    assert by_phone[ENGLISH]["text"].startswith("Hi Peter, Acme Moda")
    assert by_phone[SENT]["variant"] == "es" and by_phone[SENT]["reason"] == ""
    assert "idem_key" not in by_phone[SENT]
    _, out, _ = run_cli(
        capsys, "show", "last", "--recipients", "--format", "csv", "--state", str(state)
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {"status", "reason", "variant", "text"} <= set(rows[0])
    assert {r["status"] for r in rows} == {
        "sent",
        "suppressed",
        "invalid",
        "duplicate",
        "excluded",
        "filtered_out",
    }
    assert SENT not in out  # masked without --show-phones
    _, out, _ = run_cli(capsys, "show", "last", "--recipients", "--state", str(state))
    assert "Hola Ana, Acme Moda" in out and " es " in out


def why(capsys: pytest.CaptureFixture[str], state: Path, *args: str) -> dict[str, Any]:
    code, out, err = run_cli(
        capsys, "why", *args, "--format", "json", "--state", str(state)
    )
    assert code == 0, err
    return dict(json.loads(out))


def test_why_answers_for_each_number(
    ran: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, run_id = ran

    def outcomes(*args: str) -> list[tuple[str, str, str]]:
        doc = why(capsys, state, *args)
        return [(o["run"], o["status"], o["reason"]) for o in doc["outcomes"]]

    # a national number, read with the campaign's default_region (ES)
    assert outcomes("600 000 001", "spring-promo") == [(run_id, "sent", "")]
    assert outcomes(DUPLICATE) == [
        (run_id, "sent", ""),
        (
            run_id,
            "duplicate",
            "data/spring-contacts.csv:10: an earlier row has the same number",
        ),
    ]
    assert outcomes(EXCLUDED) == [
        (
            run_id,
            "excluded",
            "data/spring-contacts.csv:8: on an opt-out list (recipients.exclude)",
        )
    ]
    assert outcomes("600000005", "--region", "ES") == [
        (run_id, "filtered_out", "data/spring-contacts.csv:6: where: city != 'Bilbao'")
    ]
    # not a number at all: its invalid row, found as it was written
    assert outcomes("12345", "spring-promo") == [
        (run_id, "invalid", "data/spring-contacts.csv:9: too short")
    ]
    held = why(capsys, state, SUPPRESSED)
    assert [s["reason"] for s in held["suppressions"]] == ["manual"]
    assert held["outcomes"][0]["status"] == "suppressed"
    english = why(capsys, state, ENGLISH)["outcomes"][0]
    assert english["variant"] == "en" and english["delivery"] is None
    assert english["campaign"] == "spring-promo" and english["mode"] == "rehearsal"


def test_why_masks_phones_and_says_when_a_number_is_nowhere(
    ran: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, run_id = ran
    code, out, _ = run_cli(capsys, "why", DUPLICATE, "--state", str(state))
    assert code == 0
    assert out.splitlines()[0] == "+34*****0002: 2 outcomes in 1 run of 1 campaign"
    assert DUPLICATE not in out and run_id in out and "Hola José" in out
    code, out, _ = run_cli(
        capsys, "why", DUPLICATE, "--show-phones", "--state", str(state)
    )
    assert out.startswith(DUPLICATE + ":")
    code, out, _ = run_cli(capsys, "why", SUPPRESSED, "--state", str(state))
    assert "on the suppression list (real, scope marketing)" in out
    code, out, err = run_cli(capsys, "why", NOWHERE, "--state", str(state))
    assert code == 1 and out == ""
    assert err == (
        "campaign-runner: +34*****0098 appears nowhere: no message, no row left out, "
        "not on the suppression list\n"
    )
    # a national number without a region to read it by
    code, _, err = run_cli(capsys, "why", "600000001", "--state", str(state))
    assert code == 1 and err.rstrip().endswith("pass --region, e.g. --region ES)")
    code, _, err = run_cli(capsys, "why", SENT, "autumn", "--state", str(state))
    assert code == 2 and "no campaign 'autumn'" in err and err.count("\n") == 1


def test_history_counts_what_is_pending_and_json_embeds_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second sending held back by the frequency cap: deferred, still to send."""
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)

    def capped(data: dict[str, Any]) -> None:
        data["steps"] = [s for s in data["steps"] if "send" in s]
        data["limits"] = {"per_recipient": "1/24h", "on_cap": "defer"}

    edit(campaign, capped)
    state = tmp_path / "j.db"
    args = ("run", str(campaign), "--sandbox", "--now", "--state", str(state))
    assert cli(*args).returncode == 0
    proc = start_cli(*args, "--again")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _counts(state) == {"deferred": 6}:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the second sending was never deferred")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    code, out, err = run_cli(capsys, "history", "--format", "json", "--state", str(state))
    assert code == 0, err
    run, first = json.loads(out)
    assert run["pending"] == 6 and run["sent"] == 0
    assert run["counts"] == {"deferred": 6}
    assert first["pending"] == 0 and first["sent"] == 6
    assert run["options"]["now"] is True  # an object, not a string of JSON
    assert set(run["fingerprint"]) == {"templates", "recipients", "vars"}
    code, out, _ = run_cli(capsys, "history", "--format", "csv", "--state", str(state))
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["pending"] == "6" and "queued" not in row
    code, out, _ = run_cli(capsys, "history", "--state", str(state))
    assert out.split()[: len(HISTORY)] == HISTORY
    shown = show_json(capsys, state, "last")
    assert isinstance(shown["run"]["options"], dict)
    # and why Ana has not had the second one yet: the cap, newest first
    trail = why(capsys, state, SENT)["outcomes"]
    assert [(o["run"], o["status"]) for o in trail] == [
        (run["id"], "deferred"),
        (first["id"], "sent"),
    ]
    assert trail[0]["reason"].startswith("deferred: ") and "1/24h" in trail[0]["reason"]
    code, out, _ = run_cli(capsys, "status", "--format", "json", "--state", str(state))
    assert code == 0
    status = json.loads(out)
    assert status["in_progress"][0]["counts"] == {"deferred": 6}
    assert not [v for v in _strings(status) if v.startswith(("{", "["))]


HISTORY = ["id", "campaign", "occurrence", "mode", "status", "started_at"]
HISTORY += ["finished_at", "sent", "fired", "failed", "unknown", "pending", "cancelled"]


def _counts(state: Path) -> dict[str, int]:
    j = Journal(state)
    try:
        runs = j.list_runs(limit=1)
        return runs[0]["counts"] if runs else {}
    finally:
        j.close()


def _strings(value: Any) -> list[str]:
    """Every string inside a JSON document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
