"""Who got what text (issue 18): the journal keeps each distinct text once, and
``show --recipients`` and ``why`` still give every recipient's exact text, the
one the provider received; a real run through the CLI, the sandbox in its own
process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from runkit import MAILUP_ENV, cli, copy_campaign, edit, standalone_sandbox

from runner.journal.journal import Journal

# Ana twice (one text for both), a name with accents, an emoji, a long name, and
# the English variant
CONTACTS = """phone,name,lang,city
+34600000101,Ana García,es,Madrid
+34600000102,Ana Torres,es,Sevilla
+34600000103,Begoña Ibáñez,es,Bilbao
+34600000104,Zoë🎉 Ng,en,Málaga
+34600000105,María-Auxiliadora-Bartolomé-de-las-Heras Montenegro,es,León
+34600000106,Peter Smith,en,Málaga
"""


def only_blast(data: dict[str, Any]) -> None:
    data["steps"] = [s for s in data["steps"] if s["id"] == "blast"]
    data["recipients"].pop("exclude", None)


def test_show_and_why_give_each_recipient_the_exact_text_the_provider_received(
    tmp_path: Path,
) -> None:
    campaign = copy_campaign("mailup-spring-promo.yaml", tmp_path)
    edit(campaign, only_blast)
    (tmp_path / "data" / "spring-contacts.csv").write_text(CONTACTS, encoding="utf-8")
    state = tmp_path / "j.db"
    with standalone_sandbox(campaign, MAILUP_ENV) as sb:
        sb.point(campaign)
        r = cli("run", str(campaign), "--now", "--state", str(state), env=MAILUP_ENV)
        assert r.returncode == 0, r.stdout + r.stderr
        received = {"+" + m["to"]: m["text"] for m in sb.messages()["mailup"]}
    assert len(received) == 6 and len(set(received.values())) == 5  # the Anas share
    assert "Zoë🎉" in received["+34600000104"] and "-Heras" in received["+34600000105"]

    shown = cli(
        "show", "last", "--recipients", "--show-phones", "--format", "json",
        "--state", str(state),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert {m["phone"]: m["text"] for m in doc["messages"]} == received
    assert all(m["status"] == "sent" and not m["claimed_by"] for m in doc["messages"])
    for phone in ("+34600000103", "+34600000104"):
        why = cli(
            "why", phone, "--show-phones", "--format", "json", "--state", str(state)
        )
        assert why.returncode == 0, why.stderr
        outcomes = json.loads(why.stdout)["outcomes"]
        assert [o["text"] for o in outcomes] == [received[phone]]

    j = Journal(state)
    try:
        with j.connect() as conn:
            stored = sorted(conn.scalars(sa.text("SELECT text FROM texts")))
    finally:
        j.close()
    assert stored == sorted(set(received.values()))  # each text once
