"""The README is part of the product: every command documented, the set-up real."""

from __future__ import annotations

import re
import shlex

import pytest
from paths import ROOT

from runner.cli import COMMANDS, build_parser, command_module

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
        "validate": ["x.yaml"],
        "run": ["x.yaml"],
        "test": ["x.yaml"],
        "preview": ["x.yaml"],
        "show": ["RUN"],
        "retry": ["RUN", "--failed"],
        "sandbox": ["x.yaml"],
        "daemon": ["dir"],
        "pause": ["NAME"],
        "resume": ["NAME"],
        "cancel": ["RUN"],
        "suppress": ["list"],
        "pin": ["verify", "RUN", "+34600000001", "1234"],
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
