"""The example campaigns: valid through the installed command and a third-party tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import ROOT
from runkit import offline_env

from runner.loader.load import load, load_campaign
from runner.model.campaign import CheckCreditsAction, CheckReportAction, SendAction

CAMPAIGNS = sorted((ROOT / "campaigns").glob("*.yaml"))
BIN = Path(sys.executable).parent
SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/campaign.schema.json"


def test_there_are_examples_for_every_sending_provider_and_a_multi_step_one() -> None:
    sends: set[str] = set()
    others: set[str] = set()
    multi = []
    for path in CAMPAIGNS:
        c, _ = load_campaign(path, env={})
        for step in c.steps:
            a = step.action
            if isinstance(a, SendAction):
                sends |= {c.providers[p].type for p in a.providers}
            elif isinstance(a, CheckCreditsAction | CheckReportAction):
                others.add(c.providers[a.provider].type)
        kinds = [s.kind for s in c.steps]
        if "check_credits" in kinds and "send" in kinds and "check_report" in kinds:
            delayed = any(s.kind == "wait" or s.timing.after for s in c.steps)
            multi.append(path.name if delayed else None)
    assert {"ogangi", "mailup", "tatango"} <= sends
    assert "tellody" in others
    assert any(multi)


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.name)
def test_example_has_a_header_and_the_schema_line(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert lines[0] == SCHEMA_LINE
    header = [line for line in lines[1:12] if line.startswith("#")]
    assert len(header) >= 5  # a comment explaining the campaign


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.name)
def test_example_credentials_are_env_references(path: Path) -> None:
    _, warnings = load_campaign(path, env={})
    assert all("environment variable" in w.message for w in warnings)


def test_examples_validate_with_the_installed_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_KEY", "_SECRET"))}
    result = subprocess.run(
        [
            str(BIN / "campaign-runner"),
            "validate",
            "--format",
            "json",
            *map(str, CAMPAIGNS),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [r["path"] for r in report] == [str(p) for p in CAMPAIGNS]
    for r in report:
        assert r["valid"], r
        assert {p["severity"] for p in r["problems"]} <= {"warning"}


def test_check_jsonschema_accepts_the_examples_offline(tmp_path: Path) -> None:
    schema = ROOT / "schemas" / "campaign.schema.json"
    # exactly as a user types it: no --base-uri; the relative $refs
    # (providers/<type>.schema.json) resolve to the files beside the schema
    args = [str(BIN / "check-jsonschema"), "--schemafile", str(schema), "--no-cache"]
    ok = subprocess.run(
        [*args, *map(str, CAMPAIGNS)],
        cwd=tmp_path,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # and it does read the provider fragments: a missing MailUp option is caught
    broken = tmp_path / "broken.yaml"
    text = (ROOT / "campaigns" / "mailup-spring-promo.yaml").read_text()
    broken.write_text(text.replace("list_secret: ${MAILUP_LIST_SECRET}", "x: 1"))
    bad = subprocess.run(
        [*args, str(broken)],
        cwd=tmp_path,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "'list_secret' is a required property" in bad.stdout


def test_readme_campaign_snippet_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Writing a campaign", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "contacts.csv").write_text("phone,name\n+34600000001,Ana\n")
    (tmp_path / "data" / "optout.txt").write_text("")
    path = tmp_path / "readme.yaml"
    path.write_text(snippet)
    env = {"TATANGO_API_KEY": "k", "TELLODY_PASSWORD": "p"}
    campaign, warnings = load_campaign(path, env=env)
    assert warnings == [] and [s.id for s in campaign.steps] == [
        "credits",
        "blast",
        "report",
    ]
    # and the sample error line the section shows is exactly what validate prints
    shown = section.split("example above:\n`", 1)[1].split("`", 1)[0]
    broken = snippet.replace("{id: blast, send:", "{id: blast, sned:")
    (tmp_path / "spring.yaml").write_text(broken)
    monkeypatch.chdir(tmp_path)
    problems = load(Path("spring.yaml"), env=env).problems
    assert [p.format() for p in problems] == [shown]
