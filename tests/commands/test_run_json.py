"""``run --format json``: the summary on stdout for tools, the progress on stderr."""

from __future__ import annotations

import json
from pathlib import Path

from runkit import cli, journal_rows


def scaffold(tmp_path: Path) -> Path:
    r = cli("new", "promo", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp_path / "promo.yaml"


def test_a_sandbox_run_prints_one_json_summary_on_stdout(tmp_path: Path) -> None:
    campaign = scaffold(tmp_path)
    state = tmp_path / "j.db"
    r = cli(
        "run", str(campaign), "--sandbox", "--now", "--state", str(state),
        "--format", "json",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)  # stdout is the JSON and nothing else
    run_id, rows = journal_rows(state)
    assert summary["run_id"] == run_id
    assert summary["campaign"] == "promo"
    assert (summary["status"], summary["exit_code"]) == ("succeeded", 0)
    assert summary["mode"] == "rehearsal"
    assert [(s["id"], s["kind"], s["status"]) for s in summary["steps"]] == [
        ("credits", "check_credits", "succeeded"),
        ("blast", "send", "succeeded"),
        ("delivery", "check_report", "succeeded"),
    ]
    blast = summary["steps"][1]
    assert blast["messages"] == {"sent": 3} == summary["messages"]
    assert blast["recipients"]["excluded"] == 1 and blast["recipients"]["read"] == 4
    assert len(rows) == 3
    assert summary["journal"] == str(state)
    assert summary["events"] == str(tmp_path / "events.jsonl")
    assert Path(summary["events"]).is_file()
    # what people read went to stderr
    assert "running promo (3 steps)" in r.stderr and f"run {run_id}" in r.stderr


def test_a_failed_check_says_failed_with_its_exit_code(tmp_path: Path) -> None:
    campaign = scaffold(tmp_path)
    # the sandbox fails the delivery of numbers ending in 99: the report's
    # delivered_ratio 0.9 is not met
    (tmp_path / "promo-contacts.csv").write_text(
        "phone,name\n+34600000199,Ana\n+34600000299,Luis\n"
    )
    r = cli(
        "run", str(campaign), "--sandbox", "--now", "--state", str(tmp_path / "j.db"),
        "--format", "json",
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    by_id = {s["id"]: s for s in summary["steps"]}
    assert by_id["blast"]["status"] == "succeeded"
    assert by_id["delivery"]["status"] == "failed"
    assert "delivered" in by_id["delivery"]["message"]
    assert "+346" not in r.stdout  # no phone number in the summary


def test_a_dry_run_names_no_journal(tmp_path: Path) -> None:
    campaign = scaffold(tmp_path)
    r = cli("run", str(campaign), "--dry-run", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert summary["mode"] == "dry run"
    assert summary["journal"] is None and summary["events"] is None
    assert summary["messages"] == {"queued": 3}
