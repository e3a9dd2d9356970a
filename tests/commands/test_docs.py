"""The README is part of the product: every command documented, the set-up real,
and its tables of options the schema's own keys (read from both, so that they
cannot drift apart)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex

import pytest
from paths import ROOT

from runner import providers
from runner.cli import COMMANDS, build_parser, command_module
from runner.model.campaign import CheckReportAction, Expect
from runner.model.timeparse import parse_duration

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_and_is_in_the_readme(name: str) -> None:
    main = command_module(name).main
    assert (main.__doc__ or "").strip(), f"{name} has no help text"
    assert f"campaign-runner {name}" in README, f"'campaign-runner {name}' not in README"
    build_parser().parse_args([name, *_required(name)])  # its arguments parse
    build_parser(only=name).parse_args([name, *_required(name)])  # alone, too


def _required(name: str) -> list[str]:
    return {
        "new": ["x"],
        "validate": ["x.yaml"],
        "run": ["x.yaml"],
        "test": ["x.yaml"],
        "preview": ["x.yaml"],
        "show": ["RUN"],
        "why": ["+34600000001"],
        "retry": ["RUN", "--failed"],
        "sandbox": ["x.yaml"],
        "daemon": ["dir"],
        "pause": ["NAME"],
        "resume": ["NAME"],
        "cancel": ["RUN"],
        "suppress": ["list"],
        "pin": ["verify", "RUN", "+34600000001", "1234"],
        "completion": ["bash"],
    }.get(name, [])


def setup_commands() -> list[str]:
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)


def test_setup_is_two_commands_and_the_first_runs_a_real_example() -> None:
    first, second = setup_commands()
    args = shlex.split(first.split("&&")[-1])
    assert (
        args[:2] == ["campaign-runner", "run"] and "--sandbox" in args and "--now" in args
    )
    assert (ROOT / args[2]).is_file()
    assert "pytest" in second


def test_ci_runs_the_readme_test_command() -> None:
    _, second = setup_commands()
    test_command = second.split("&&", 2)[2].strip()  # after creating the venv
    ci = (ROOT / ".ci" / "run").read_text()
    assert (
        test_command.replace("pip install", "pip install -q") in ci or test_command in ci
    )


SCHEMA = json.loads((ROOT / "schemas" / "campaign.schema.json").read_text())["$defs"]


def readme_table(heading: str, first: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the table under ``### heading`` whose first column
    is headed ``first``, cells stripped (and names of their backticks)."""
    section = README.split(f"\n### {heading}\n", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append([cells[0].strip("`"), *cells[1:]])
    return header, rows


def test_every_expect_key_is_documented_with_the_providers_that_evaluate_it() -> None:
    header, rows = readme_table("Checking reports", "expect")
    documented = [r[0] for r in rows]
    schema_keys = SCHEMA["expect"]["properties"]
    assert sorted(documented) == sorted(schema_keys)
    assert set(documented) == {f.name for f in dataclasses.fields(Expect)}
    assert header[2:] == sorted(providers.PROVIDERS)
    for key, _, *support in rows:
        for name, said in zip(header[2:], support, strict=True):
            evaluates = key not in providers.unmeasurable(name)
            assert said == ("yes" if evaluates else "no"), (key, name, said)


def test_check_report_options_and_defaults_are_the_schemas() -> None:
    _, rows = readme_table("Checking reports", "option")
    assert sorted(r[0] for r in rows) == sorted(SCHEMA["check_report"]["properties"])
    defaults = CheckReportAction("p", "s")
    for name, text in rows:
        said = re.search(r"\(default `([^`]+)`\)", text)
        if name in ("every", "timeout"):
            assert said, f"{name}: no default in the README"
            assert parse_duration(said.group(1)) == getattr(defaults, name)
            described = SCHEMA["check_report"]["properties"][name]["description"]
            assert f"Default {said.group(1)}." in described


def test_window_keys_are_the_schemas() -> None:
    _, rows = readme_table("Sending windows", "key")
    window = SCHEMA["window"]["properties"]
    assert sorted(r[0] for r in rows) == sorted(window)
    days = dict(rows)["days"]
    assert re.findall(r"`(\w{3})`", days) == window["days"]["items"]["enum"]
    for name in ("timezone", "several_zones"):
        for value in window[name]["enum"]:
            assert f"`{value}`" in dict(rows)[name], (name, value)
