"""Recipients across campaigns, through the CLI: STOP replies, opt-out refusals and
hand-made entries on the journal's suppression list, honoured by every campaign;
frequency caps counted across campaigns."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from runkit import (
    MAILUP_ENV,
    cli,
    copy_campaign,
    edit,
    events,
    journal_rows,
    standalone_sandbox,
    start_cli,
)

from runner.journal.journal import Journal

OGANGI_ENV = {"OGANGI_PUBLIC_KEY": "pk-test", "OGANGI_PRIVATE_KEY": "sk-test"}
STOPPER = "+584121234502"


def reminders(tmp: Path, name: str = "clinic-reminders", **sandbox: Any) -> Path:
    """The Ogangi example: send, read the replies, send again (no schedule)."""
    path = copy_campaign("ogangi-appointment-reminder.yaml", tmp)
    target = path.with_name(f"{name}.yaml")
    path.rename(target)

    def shape(d: dict[str, Any]) -> None:
        d["name"] = name
        d.pop("schedule", None)
        d["sandbox"] = sandbox
        d["steps"][1]["check_report"].update(every="1s", expect={"max_optout_ratio": 0.5})
        d["steps"].append(
            {"id": "again", "send": {"provider": "ogangi", "template": "reminder"}}
        )

    edit(target, shape)
    return target


def statuses(state: Path, step: str) -> dict[str, str]:
    _, rows = journal_rows(state)
    return {r["phone"]: r["status"] for r in rows if r["step_id"] == step}


def listed(state: Path, *extra: str) -> list[dict[str, Any]]:
    r = cli(
        "suppress",
        "list",
        "--format",
        "json",
        "--show-phones",
        "--state",
        str(state),
        *extra,
    )
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def test_a_stop_reply_stops_the_next_step_and_every_later_campaign(
    tmp_path: Path,
) -> None:
    state = tmp_path / "j.db"
    first = reminders(tmp_path, replies={STOPPER: "STOP por favor"})
    r = cli(
        "run", str(first), "--sandbox", "--now", "--state", str(state), env=OGANGI_ENV
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 numbers replied STOP: added to the suppression list" in r.stdout
    assert "not sent now: 1 suppressed" in r.stdout
    again = statuses(state, "again")
    assert again.pop(STOPPER) == "suppressed"
    assert set(again.values()) == {"sent"}  # the others got the follow-up
    [entry] = listed(state, "--sandbox")
    assert entry["phone"] == STOPPER and entry["reason"] == "stop"
    assert entry["source"].startswith("STOP reply via ogangi (run ")
    assert listed(state) == []  # a rehearsal's STOP never holds back real sending

    # a second campaign to the same people skips the number from its first step
    other = reminders(tmp_path / "b", name="clinic-surveys")
    r = cli(
        "run", str(other), "--sandbox", "--now", "--state", str(state), env=OGANGI_ENV
    )
    assert r.returncode == 0, r.stdout + r.stderr
    run_id, rows = journal_rows(state)
    first_step = {x["phone"]: x["status"] for x in rows if x["step_id"] == "remind"}
    assert first_step[STOPPER] == "suppressed"
    assert sorted(set(first_step.values())) == ["sent", "suppressed"]
    shown = cli("history", "--format", "json", "--state", str(state))
    newest = json.loads(shown.stdout)[0]
    assert newest["id"] == run_id and newest["suppressed"] == 2  # remind and again


def test_a_number_refused_as_opted_out_joins_the_list(tmp_path: Path) -> None:
    state = tmp_path / "j.db"
    path = copy_campaign("mailup-spring-promo.yaml", tmp_path)

    def shape(d: dict[str, Any]) -> None:
        d["sandbox"] = {"opted_out": ["+34600000002"]}
        d["steps"] = [d["steps"][1]]  # the send alone
        d["steps"][0]["send"]["max_failed"] = 0.5

    edit(path, shape)
    r = cli("run", str(path), "--sandbox", "--now", "--state", str(state), env=MAILUP_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 numbers refused as opted out: added to the suppression list" in r.stdout
    [entry] = listed(state, "--sandbox")
    assert (entry["phone"], entry["reason"]) == ("+34600000002", "optout")
    assert "refused by mailup as opted out" in entry["source"]
    # the same campaign again (a new occurrence): the number is not even called
    r = cli(
        "run",
        str(path),
        "--sandbox",
        "--now",
        "--again",
        "--state",
        str(state),
        env=MAILUP_ENV,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert statuses(state, "blast")["+34600000002"] == "suppressed"


def test_hand_made_entries_and_transactional_campaigns(tmp_path: Path) -> None:
    state = tmp_path / "j.db"
    r = cli(
        "suppress",
        "add",
        "+34600000002",
        "+34600000003",
        "--reason",
        "asked by phone",
        "--state",
        str(state),
    )
    assert r.returncode == 0 and "2 numbers added" in r.stdout, r.stderr
    r = cli("suppress", "add", "+34600000003", "--scope", "all", "--state", str(state))
    assert "0 numbers added" in r.stdout  # already listed: widened, not doubled
    bad = cli("suppress", "add", "12", "--state", str(state))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "'12' is not a phone number" in bad.stderr
    entries = {e["phone"]: e for e in listed(state)}
    assert entries["+34600000002"]["scope"] == "marketing"
    assert entries["+34600000003"]["scope"] == "all"
    assert entries["+34600000002"]["source"] == "added by hand: asked by phone"
    masked = cli("suppress", "list", "--state", str(state)).stdout
    assert "+34600000002" not in masked and "+34*****0002" in masked

    path = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    preview = cli(
        "preview", str(path), "--limit", "0", "--state", str(state), env=MAILUP_ENV
    )
    assert "suppressed: 2 of the accepted recipients" in preview.stdout, preview.stdout

    def transactional(d: dict[str, Any]) -> None:
        d["kind"] = "transactional"
        d["steps"] = [d["steps"][1]]

    edit(path, transactional)
    r = cli("run", str(path), "--sandbox", "--now", "--state", str(state), env=MAILUP_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    blast = statuses(state, "blast")
    # marketing-only suppression spares a transactional message; scope all does not
    assert blast["+34600000002"] == "sent" and blast["+34600000003"] == "suppressed"

    # off the list: the next run of a campaign sends to it again
    r = cli("suppress", "remove", "+34600000003", "--state", str(state))
    assert "1 of 1 numbers taken off" in r.stdout
    r = cli(
        "run",
        str(path),
        "--sandbox",
        "--now",
        "--again",
        "--state",
        str(state),
        env=MAILUP_ENV,
    )
    assert statuses(state, "blast")["+34600000003"] == "sent", r.stdout


def test_import_names_each_bad_line_and_keeps_the_good_ones(tmp_path: Path) -> None:
    state = tmp_path / "j.db"
    export = tmp_path / "optouts.csv"
    export.write_text(
        "name,phone\nAna,+34600000002\nBad,not-a-number\nLuis,34600000003\n"
    )
    r = cli("suppress", "import", str(export), "--region", "ES", "--state", str(state))
    assert r.returncode == 1
    assert f"{export}:3: 'not-a-number' is not a phone number" in r.stderr
    assert "2 numbers added" in r.stdout and "1 not phone numbers" in r.stdout
    assert {e["phone"] for e in listed(state)} == {"+34600000002", "+34600000003"}
    assert all(e["source"] == "imported from optouts.csv" for e in listed(state))


def test_a_frequency_cap_holds_across_campaigns(tmp_path: Path) -> None:
    """Two campaigns to overlapping lists under 1/24h: the overlap gets one."""
    state = tmp_path / "j.db"
    first = copy_campaign("mailup-spring-promo.yaml", tmp_path / "a")
    second = copy_campaign("mailup-spring-promo.yaml", tmp_path / "b")

    def shape(name: str) -> Any:
        def apply(d: dict[str, Any]) -> None:
            d["name"] = name
            d["limits"] = {"per_recipient": "1/24h"}
            d["steps"] = [d["steps"][1]]

        return apply

    edit(first, shape("spring-a"))
    edit(second, shape("spring-b"))
    r = cli(
        "run", str(first), "--sandbox", "--now", "--state", str(state), env=MAILUP_ENV
    )
    assert r.returncode == 0, r.stdout + r.stderr
    sent_first = {p for p, s in statuses(state, "blast").items() if s == "sent"}
    r = cli(
        "run", str(second), "--sandbox", "--now", "--state", str(state), env=MAILUP_ENV
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "capped (frequency cap 1/24h)" in r.stdout
    second_rows = statuses(state, "blast")
    assert {p for p, s in second_rows.items() if s == "capped"} == sent_first
    assert "sent" not in second_rows.values()
    log = events(tmp_path / "events.jsonl")
    held = [e for e in log if e["event"] == "step.held"]
    assert held[-1]["capped"] == len(sent_first) and held[-1]["cap"] == "1/24h"


def test_a_follow_up_resends_the_undelivered_through_the_backup_once(
    tmp_path: Path,
) -> None:
    """The sandbox fails the deliveries to numbers ending in 99: after the
    report, exactly those are sent again, through the backup, with what the
    first message was in the template."""
    state = tmp_path / "j.db"
    path = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    csv = tmp_path / "people.csv"
    numbers = [f"+3460000{i:02d}{99 if i % 4 == 0 else 10 + i:02d}" for i in range(12)]
    csv.write_text(
        "phone,name,lang\n" + "".join(f"{n},Name {i},es\n" for i, n in enumerate(numbers))
    )

    def shape(d: dict[str, Any]) -> None:
        d["recipients"] = {"file": "people.csv"}
        d["providers"]["backup"] = dict(d["providers"]["mailup"])
        d["templates"]["again"] = (
            "Second try ({{ previous.delivery_status }}): {{ name }}"
        )
        report = d["steps"][2]
        report["check_report"].update(every="500ms", expect={})
        d["steps"] = [
            d["steps"][1],
            report,
            {
                "id": "resend",
                "send": {
                    "provider": "backup",
                    "template": "again",
                    "recipients": {
                        "from": "blast",
                        "where": "delivery_status == 'failed'",
                    },
                },
            },
        ]

    edit(path, shape)
    r = cli("run", str(path), "--sandbox", "--now", "--state", str(state), env=MAILUP_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    _, rows = journal_rows(state)
    failed = {
        x["phone"]
        for x in rows
        if x["step_id"] == "blast" and x["delivery_status"] == "failed"
    }
    assert failed == {n for n in numbers if n.endswith("99")}
    resent = [x for x in rows if x["step_id"] == "resend"]
    assert {x["phone"] for x in resent} == failed  # exactly those, once each
    assert {(x["provider"], x["status"]) for x in resent} == {("backup", "sent")}
    assert all(x["text"].startswith("Second try (failed): Name ") for x in resent)
    # why a delivered number got no second try: the follow-up did not pick it
    shown = cli("why", numbers[1], "--format", "json", "--state", str(state))
    outcomes = [
        (o["step"], o["status"], o["reason"])
        for o in json.loads(shown.stdout)["outcomes"]
    ]
    assert outcomes == [
        (
            "resend",
            "filtered_out",
            "step blast row 2: its message in step blast is sent, not "
            "where: delivery_status == 'failed'",
        ),
        ("blast", "sent", ""),
    ]


def test_a_follow_up_is_validated_against_what_the_earlier_step_can_tell(
    tmp_path: Path,
) -> None:
    path = reminders(tmp_path)

    def shape(d: dict[str, Any]) -> None:
        d["steps"][2]["send"]["recipients"] = {
            "from": "remind",
            "where": "delivery_status == 'failed'",
        }
        d["steps"].append(
            {
                "id": "later",
                "send": {
                    "provider": "ogangi",
                    "template": "reminder",
                    "recipients": {"from": "nope", "status": "failed"},
                },
            }
        )

    edit(path, shape)
    r = cli("validate", str(path), env=OGANGI_ENV)
    assert r.returncode == 1
    said = r.stdout
    assert "steps[2].send.recipients.where: step 'remind' sends through 'ogangi'" in said
    assert "select by the send outcome (status:) instead" in said
    assert "steps[3].send.recipients.from: unknown step 'nope'" in said


def test_two_campaigns_sending_at_once_still_send_the_overlap_once(
    tmp_path: Path,
) -> None:
    """Both plan before either sends (no plan-time hold can see the other): the
    cap is checked again on each claim, and the first claim of a number wins."""
    state = tmp_path / "j.db"
    paths = []
    for name, first in (("race-a", 0), ("race-b", 100)):
        path = copy_campaign("mailup-spring-promo.yaml", tmp_path / name)
        (path.parent / "many.csv").write_text(
            "phone,name,lang\n"
            + "".join(f"+3469{i:07d},N {i},es\n" for i in range(first, first + 300))
        )

        def apply(d: dict[str, Any], name: str = name) -> None:
            d["name"] = name
            d["limits"] = {"per_recipient": "1/24h"}
            d["recipients"] = {"file": "many.csv"}
            d["steps"] = [d["steps"][1]]
            d["providers"]["mailup"].update(rate="150/s", concurrency=4)

        edit(path, apply)
        paths.append(path)
    with standalone_sandbox(paths[0], MAILUP_ENV) as sb:
        for p in paths:
            sb.point(p)
        procs = [
            start_cli("run", str(p), "--now", "--state", str(state), env=MAILUP_ENV)
            for p in paths
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        received = sb.messages()["mailup"]
    assert [p.returncode for p in procs] == [0, 0], outs
    per_number = Counter(m["to"] for m in received)
    assert len(per_number) == 400  # 0-399: 200 of them on both lists
    assert max(per_number.values()) == 1
    j = Journal(state)
    try:
        rows = [m for r in j.list_runs() for m in j.messages_for(r["id"])]
    finally:
        j.close()
    by_phone: dict[str, list[str]] = {}
    for m in rows:
        by_phone.setdefault(m["phone"], []).append(m["status"])
    both = {p: sorted(s) for p, s in by_phone.items() if len(s) == 2}
    assert len(both) == 200
    assert set(map(tuple, both.values())) == {("capped", "sent")}
