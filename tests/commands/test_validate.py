"""``campaign-runner validate``: output lines, JSON, exit codes."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from paths import CAMPAIGNS, DATA

from runner.cli import main
from runner.commands.validate import validate_files
from runner.errors import UsageError


@pytest.fixture
def cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the case files as the working directory, the secrets set."""
    for kind in ("valid", "invalid"):
        shutil.copytree(DATA / kind, tmp_path / kind)
    monkeypatch.chdir(tmp_path)
    for var in ("TATANGO_API_KEY", "TELLODY_PASSWORD"):
        monkeypatch.setenv(var, "x")
    return tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_file_exits_0_with_a_summary(
    cases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["validate", "valid/literal_secret.yaml"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("valid/literal_secret.yaml:8:14: providers.sms.api_key: ")
    assert "warning: a literal secret" in lines[0]
    assert lines[1] == "valid/literal_secret.yaml: valid (1 warning)"


def test_every_problem_of_every_file_and_exit_1(
    cases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [
        "invalid/unknown_references.yaml",
        "valid/missing_env.yaml",
        "invalid/tab_indent.yaml",
    ]
    code, out, _ = run(["validate", *files], capsys)
    assert code == 1
    lines = out.splitlines()
    expected = (DATA / "invalid" / "unknown_references.expected").read_text().splitlines()
    assert lines[: len(expected)] == [f"invalid/{line}" for line in expected]
    assert "valid/missing_env.yaml: valid (2 warnings)" in lines
    assert (
        lines[-1]
        == "invalid/tab_indent.yaml:5:1: tab character: YAML must be indented with spaces"
    )


def test_json_format(cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "validate",
            "--format",
            "json",
            "invalid/duplicate_step_id.yaml",
            "valid/full.yaml",
        ],
        capsys,
    )
    assert code == 1
    report = json.loads(out)
    assert [(r["path"], r["valid"]) for r in report] == [
        ("invalid/duplicate_step_id.yaml", False),
        ("valid/full.yaml", True),
    ]
    assert report[0]["problems"] == [
        {
            "path": "invalid/duplicate_step_id.yaml",
            "line": 17,
            "col": 9,
            "field": "steps[2].id",
            "message": "duplicate step id 'blast' (first used on line 13)",
            "severity": "error",
        }
    ]
    assert {p["severity"] for p in report[1]["problems"]} == {"warning"}


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("nope.yaml", "nope.yaml: no such file"),
        ("valid/data", "valid/data: a folder without *.yaml or *.yml files"),
    ],
)
def test_missing_file_or_empty_folder_is_a_usage_error(
    cases: Path, capsys: pytest.CaptureFixture[str], arg: str, message: str
) -> None:
    code, out, err = run(["validate", "valid/full.yaml", arg], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"campaign-runner: {message}")
    assert len(err.splitlines()) == 1


def test_two_files_with_one_campaign_name_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (CAMPAIGNS / "mailup-spring-promo.yaml").read_text()
    (tmp_path / "data").symlink_to(CAMPAIGNS / "data")
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    line = next(
        n for n, x in enumerate(text.splitlines(), start=1) if x.startswith("name:")
    )
    code, out, _ = run(["validate", str(tmp_path)], capsys)
    assert code == 1
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert f"{a}: valid" in out
    assert (
        f"{b}:{line}:1: name: campaign name 'spring-promo' is also the name of {a}" in out
    )
    assert f"{b}: valid" not in out


def test_no_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["validate"], capsys)
    assert code == 2 and "FILE" in err


def test_domain_function_raises_usage_error(cases: Path) -> None:
    with pytest.raises(UsageError):
        validate_files(["missing.yaml"], "text", io.StringIO())


def test_secrets_never_reach_the_output(
    cases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cases / "secret.yaml"
    text = (cases / "valid" / "literal_secret.yaml").read_text()
    path.write_text(text.replace("steps:", "stepz:"))
    for fmt in ("text", "json"):
        code, out, err = run(["validate", "--format", fmt, str(path)], capsys)
        assert code == 1
        assert "0123456789abcdef" not in out + err


def test_strict_makes_warnings_fatal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = str(CAMPAIGNS / "tatango-order-ready.yaml")
    monkeypatch.delenv("TATANGO_API_KEY", raising=False)
    code, out, _ = run(["validate", example], capsys)
    assert code == 0 and out.endswith(": valid (1 warning)\n")
    code, out, _ = run(["validate", "--strict", example], capsys)
    assert code == 1 and out.endswith(": invalid under --strict (1 warning)\n")
    monkeypatch.setenv("TATANGO_API_KEY", "set")
    code, out, _ = run(["validate", "--strict", example], capsys)
    assert code == 0 and out.endswith(": valid\n")


def test_a_one_off_start_in_the_past_is_a_warning_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (CAMPAIGNS / "tatango-order-ready.yaml").read_text()
    when = (datetime.now(UTC) - timedelta(days=4, hours=1)).isoformat(timespec="seconds")
    path = tmp_path / "late.yaml"
    path.write_text(text + f"schedule:\n  at: '{when}'\n")
    (tmp_path / "data").symlink_to(CAMPAIGNS / "data")
    code, out, _ = run(["validate", str(path)], capsys)
    assert code == 0
    line = text.count("\n") + 2
    assert (
        f"{path}:{line}:7: schedule.at: warning: {when} was 4 days ago: the daemon "
        "skips a one-off start later than its misfire_grace_time" in out
    )


@pytest.mark.parametrize(
    ("example", "key", "why"),
    [
        ("mailup-spring-promo.yaml", "max_optout_ratio", "no opt-out count"),
        (
            "ogangi-appointment-reminder.yaml",
            "delivered_ratio",
            "no status per recipient",
        ),
    ],
)
def test_an_expectation_the_provider_cannot_evaluate_is_an_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    example: str,
    key: str,
    why: str,
) -> None:
    data = yaml.safe_load((CAMPAIGNS / example).read_text())
    step = next(s for s in data["steps"] if "check_report" in s)
    step["check_report"]["expect"] = {key: 0.5}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    (tmp_path / "data").symlink_to(CAMPAIGNS / "data")
    code, out, _ = run(["validate", str(path)], capsys)
    provider = step["check_report"]["provider"]
    assert code == 1
    assert (
        f".expect.{key}: provider '{provider}' ({provider}) cannot evaluate {key}: "
        f"its report has {why}"
    ) in out


def test_names_a_template_uses_that_nothing_gives_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV header without the field, a vars key that is not there: each at the
    template's own line, with a hint; guarded names are left alone."""
    shutil.copytree(CAMPAIGNS / "data", tmp_path / "data")
    data = yaml.safe_load((CAMPAIGNS / "mailup-spring-promo.yaml").read_text())
    data["templates"]["promo"] = (
        "Hi {{ nmae }},\n"
        "{{ vars.shopp }} {{ vars['code'] }}\n"
        "{% if coupon is defined %}{{ coupon }}{% endif %}{{ extra | default('') }}\n"
        "{% for x in [1] %}{{ x }}{% endfor %}{{ recipient.city }} {{ now }}"
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    code = main(["validate", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    errors = [line for line in out.splitlines() if ": templates.promo:" in line]
    line = next(
        i + 1 for i, text in enumerate(path.read_text().splitlines()) if "nmae" in text
    )
    where = [e.split(": templates.promo: ")[0].rsplit(":", 1)[0] for e in errors]
    said = [e.split(": templates.promo: ")[1] for e in errors]
    assert where == [f"{path}:{line}", f"{path}:{line + 1}"]
    assert said == [
        "undefined variable 'nmae': no such field in spring-contacts.csv's header "
        "(city, lang, name, phone). Perhaps you meant 'name'?",
        "vars has no 'shopp'. Perhaps you meant 'shop'?",
    ]
