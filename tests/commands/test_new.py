"""``campaign-runner new``: a scaffold that validates, runs, and completes in editors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from runkit import cli, journal_rows, offline_env

from runner.cli import main
from runner.commands.scaffold import KINDS
from runner.loader.load import load_campaign
from runner.loader.schema import bundled_schema_text

TYPES = sorted(KINDS)
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def new(*args: str) -> int:
    return main(["new", *args])


@pytest.mark.parametrize("type_", TYPES)
def test_every_provider_type_scaffolds_a_valid_campaign(
    tmp_path: Path, type_: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new("my-sms", "--provider", type_, "--dir", str(tmp_path / "c")) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "c"
    assert sorted(p.name for p in folder.iterdir()) == [
        "campaign.schema.json",
        "my-sms-contacts.csv",
        "my-sms-optout.txt",
        "my-sms.yaml",
    ]
    assert f"wrote {folder / 'my-sms.yaml'}" in out
    text = (folder / "my-sms.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=campaign.schema.json"
    assert (folder / "campaign.schema.json").read_text() == bundled_schema_text()
    # validate: valid, the only warnings the unset ${VARS} of the credentials
    assert main(["validate", str(folder / "my-sms.yaml")]) == 0
    report = capsys.readouterr().out
    n = len(KINDS[type_].env)
    assert report.strip().endswith(f"valid ({n} warning{'s' if n > 1 else ''})"), report
    campaign, warnings = load_campaign(folder / "my-sms.yaml", env={})
    assert {p.type for p in campaign.providers.values()} >= {type_}
    assert {w.message.split()[2] for w in warnings} == set(KINDS[type_].env)
    # credentials only as ${VAR}: the file holds none
    for var in KINDS[type_].env:
        assert f"${{{var}}}" in text


def test_the_scaffold_runs_on_the_sandbox(tmp_path: Path) -> None:
    folder = tmp_path / "camp"
    r = cli("new", "spring", "--dir", str(folder))
    assert r.returncode == 0, r.stdout + r.stderr
    state = tmp_path / "j.db"
    r = cli(
        "run", str(folder / "spring.yaml"), "--sandbox", "--now", "--state", str(state)
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "succeeded" in r.stdout
    _, rows = journal_rows(state)
    # four sample rows, one on the opt-out list: three sent, all delivered
    assert sorted(m["status"] for m in rows) == ["sent"] * 3
    assert "1 excluded" in r.stdout
    assert "delivery: ok" in r.stdout


@pytest.mark.skipif(
    not CHECK_JSONSCHEMA.exists(), reason="check-jsonschema not installed"
)
def test_the_written_schema_checks_the_campaign_in_check_jsonschema(
    tmp_path: Path,
) -> None:
    for type_ in TYPES:
        assert new(f"c-{type_}", "--provider", type_, "--dir", str(tmp_path)) == 0
    schema = tmp_path / "campaign.schema.json"
    args = [str(CHECK_JSONSCHEMA), "--schemafile", str(schema), "--no-cache"]
    files = [str(tmp_path / f"c-{t}.yaml") for t in TYPES]
    ok = subprocess.run(
        [*args, *files], env=offline_env(), capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # and it is the whole schema, provider options included: a typo is caught
    broken = tmp_path / "c-mailup.yaml"
    broken.write_text(broken.read_text().replace("    sender: Acme", "    sendr: Acme"))
    bad = subprocess.run(
        [*args, str(broken)],
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "sendr" in bad.stdout


def test_existing_files_are_not_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new("promo", "--dir", str(tmp_path)) == 0
    csv = tmp_path / "promo-contacts.csv"
    csv.write_text("phone,name\n+34600000009,Mine\n")
    capsys.readouterr()
    assert new("promo", "--provider", "ogangi", "--dir", str(tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "promo.yaml already exists" in err[0], err
    assert "--force" in err[0]
    assert csv.read_text() == "phone,name\n+34600000009,Mine\n"  # nothing written
    assert "type: mailup" in (tmp_path / "promo.yaml").read_text()
    # another campaign in the same folder shares the schema file, unchanged
    assert new("other", "--dir", str(tmp_path)) == 0
    assert "kept " + str(tmp_path / "campaign.schema.json") in capsys.readouterr().out
    # --force overwrites
    assert new("promo", "--provider", "ogangi", "--dir", str(tmp_path), "--force") == 0
    assert "type: ogangi" in (tmp_path / "promo.yaml").read_text()
    assert "+584121234501" in csv.read_text()


@pytest.mark.parametrize("name", ["Promo", "_promo", "spring sale", "a" * 65, "x/y"])
def test_the_name_must_be_a_campaign_slug(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new(name, "--dir", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "not a campaign name" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_the_folder_should_be_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("")
    assert new("promo", "--dir", str(tmp_path / "f")) == 2
    assert "not a folder" in capsys.readouterr().err


def test_unknown_provider_type_is_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new("promo", "--provider", "twilio", "--dir", str(tmp_path)) == 2
    assert "invalid choice: 'twilio'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
