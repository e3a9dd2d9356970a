"""A large step sends its first messages while the rest is still being planned
(issue 18): exactly once, holds applied to what is planned meanwhile, a sample's
render failures still stop the step before any call, later ones are recorded.

The real ``run`` command in this process (so the sample and the batch can be made
small), against a standalone sandbox."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
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
    events,
    journal_rows,
    many_recipients,
    standalone_sandbox,
    start_cli,
)

import runner.commands.console
import runner.engine.ahead
import runner.engine.plan
import runner.engine.progress
from runner.cli import main

N = 3000
SAMPLE = 300


@pytest.fixture(autouse=True)
def small_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.engine.ahead, "SAMPLE", SAMPLE)
    # planning waits while this many are left to send: it cannot end before
    # the sending has gone most of the way
    monkeypatch.setattr(runner.engine.ahead, "LEAD", 500)
    monkeypatch.setattr(runner.engine.plan, "PLAN_BATCH", 100)
    for k, v in MAILUP_ENV.items():
        monkeypatch.setenv(k, v)


def large(tmp: Path) -> Path:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp)
    many_recipients(campaign, N)

    def apply(data: dict[str, Any]) -> None:
        data["steps"] = [s for s in data["steps"] if "send" in s]
        data["recipients"].pop("exclude", None)

    edit(campaign, apply)
    return campaign


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, StandaloneSandbox]]:
    yield from _sandbox(large(tmp_path))


def _sandbox(campaign: Path) -> Iterator[tuple[Path, StandaloneSandbox]]:
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        yield campaign, sb


def phones(campaign: Path) -> list[str]:
    lines = (campaign.parent / "many.csv").read_text().splitlines()[1:]
    return [line.split(",")[0] for line in lines]


def received(sb: StandaloneSandbox) -> Counter[str]:
    return Counter("+" + m["to"].lstrip("+") for ms in sb.messages().values() for m in ms)


def run(campaign: Path, state: Path | str) -> int:
    log = campaign.parent / "events.jsonl"
    return main(["run", str(campaign), "--now", "--state", str(state), "--log", str(log)])


def break_variant(campaign: Path, lang: str) -> None:
    """The template's ``lang`` variant names a field no recipient has."""

    def apply(data: dict[str, Any]) -> None:
        variants = data["templates"]["promo"]["variants"]
        variants[lang] = variants[lang].replace(
            "{{ name | first_name }}", "{{ recipient.nmae }}"
        )

    edit(campaign, apply)


def when(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_first_messages_go_while_the_rest_is_planned_each_once(
    sandbox: tuple[Path, StandaloneSandbox],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    campaign, sb = sandbox
    state: Path | str = tmp_path / "j.db"
    if backend == "postgresql":
        state = request.getfixturevalue("pg_url")
    numbers = phones(campaign)
    stopped = [numbers[2000], numbers[2999]]  # planned after the sample
    assert main(["suppress", "add", *stopped, "--state", str(state)]) == 0
    # a progress line at every tick: its total grows with the plan
    monkeypatch.setattr(runner.engine.progress, "EVERY", 0.02)
    monkeypatch.setattr(runner.commands.console, "PLAIN_EVERY", 0)
    assert run(campaign, state) == 0
    out, err = capsys.readouterr()
    assert "not sent now: 2 suppressed" in out
    ticks = [
        (int(m[1]), int(m[2]), bool(m[3]))
        for m in re.finditer(r"\[blast\] (\d+)/(\d+)(\+?)", err)
    ]
    assert any(planning for *_, planning in ticks)
    # never more sent than counted, and in the end every message to send
    assert all(done <= total for done, total, _ in ticks), ticks
    assert ticks[-1][1] == N - 2 and not ticks[-1][2]
    got = received(sb)
    assert set(got) == set(numbers) - set(stopped)
    assert set(got.values()) == {1}
    _, rows = journal_rows(state)
    assert Counter(r["status"] for r in rows) == {"sent": N - 2, "suppressed": 2}
    planned = next(
        e for e in events(tmp_path / "events.jsonl") if e["event"] == "step.planned"
    )
    assert planned["accepted"] == N
    sent = sorted(when(r["sent_at"]) for r in rows if r["status"] == "sent")
    # the plan stayed at most LEAD (and a batch or two) ahead of the sending
    assert sent[N - 1000] < when(planned["ts"])


def test_a_sample_that_cannot_render_stops_the_step_with_nothing_sent(
    sandbox: tuple[Path, StandaloneSandbox],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    campaign, sb = sandbox

    break_variant(campaign, "es")
    state = tmp_path / "j.db"
    assert run(campaign, state) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "blast: FAILED" in x)
    assert "messages cannot be rendered, more than max_failed 0 allows" in line, line
    assert " of the first " in line and "(nothing was sent)" in line, line
    assert sb.calls() == [] and not received(sb)
    _, rows = journal_rows(state)
    assert SAMPLE <= len(rows) < N  # the rest was never planned
    assert {r["status"] for r in rows} == {"failed"}


def test_a_message_failing_after_the_sample_is_recorded_and_never_sent(
    sandbox: tuple[Path, StandaloneSandbox],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    campaign, sb = sandbox
    csv = campaign.parent / "many.csv"
    lines = csv.read_text().splitlines()
    lines[2500] = lines[2500].replace(",es", ",en")  # the one English recipient

    csv.write_text("\n".join(lines) + "\n")
    break_variant(campaign, "en")
    state = tmp_path / "j.db"
    assert run(campaign, state) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "blast:" in x)
    assert "nmae" in line and f"sent {N - 1}" in line, line
    english = lines[2500].split(",")[0]
    got = received(sb)
    assert english not in got and len(got) == N - 1 and set(got.values()) == {1}
    _, rows = journal_rows(state)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["phone"], r["error_kind"]) for r in failed] == [(english, "template")]


def test_a_bad_row_after_the_sample_stops_the_run_and_the_fixed_file_converges(
    sandbox: tuple[Path, StandaloneSandbox],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    campaign, sb = sandbox
    edit(campaign, lambda d: d["recipients"].update(on_invalid="fail"))
    csv = campaign.parent / "many.csv"
    good = csv.read_text()
    lines = good.splitlines()
    lines[2400] = "not-a-number,Someone,es"
    csv.write_text("\n".join(lines) + "\n")
    state = tmp_path / "j.db"
    assert run(campaign, state) == 1
    out = capsys.readouterr()
    err = out.out + out.err
    assert "many.csv:2401" in err and "Traceback" not in err, err
    before = received(sb)
    assert before and set(before.values()) == {1}
    assert len(before) < N - 1  # the rows after the bad one were never planned
    csv.write_text(good.replace(lines[2400].split(",")[0], "+34699999999", 1))
    assert run(campaign, state) == 0, capsys.readouterr()
    got = received(sb)
    assert set(got) == set(phones(campaign)) and set(got.values()) == {1}


@pytest.mark.slow
def test_cancel_while_planning_stops_the_plan_and_the_sending(tmp_path: Path) -> None:
    """A real ``run`` process, with the real sample and lead: cancelled while its
    plan still goes on, nothing more is planned or sent."""
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    many_recipients(campaign, 30_000)
    edit(campaign, lambda d: d.update(steps=[s for s in d["steps"] if "send" in s]))
    state = tmp_path / "j.db"
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        proc = start_cli(
            "run", str(campaign), "--now", "--state", str(state), env=MAILUP_ENV
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(received(sb)) < 300:
                time.sleep(0.05)
            assert cli("cancel", "spring-promo", "--state", str(state)).returncode == 0
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 5, out + err
        got = received(sb)
        time.sleep(0.5)
        assert received(sb) == got and set(got.values()) == {1}
    _, rows = journal_rows(state)
    assert len(rows) < 30_000  # the rest was never planned
    statuses = Counter(r["status"] for r in rows)
    assert statuses["sent"] == len(got) and set(statuses) <= {"sent", "cancelled"}
