"""Options go before or after the file, and ``-v`` before or after the command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from runkit import cli

from runner.cli import build_parser, main, parse


def parsed(argv: list[str]) -> argparse.Namespace:
    command = next(w for w in argv if not w.startswith("-"))
    return parse(build_parser(command), argv)


@pytest.fixture
def campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "promo"]) == 0
    return "promo.yaml"


def same(a: argparse.Namespace, b: argparse.Namespace) -> bool:
    def key(ns: argparse.Namespace) -> dict[str, object]:
        d = {k: v for k, v in vars(ns).items() if k not in ("func", "command_verbose")}
        d["verbose"] = ns.verbose + ns.command_verbose  # -v before or after: one count
        return d

    return key(a) == key(b)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("run --resume F --sandbox", "run F --resume --sandbox"),
        ("run --sandbox --resume F", "run F --sandbox --resume"),
        ("run --state j.db --now F", "run F --now --state j.db"),
        ("validate --strict --format json F", "validate F --strict --format json"),
        ("preview --limit 3 F", "preview F --limit 3"),
        ("sandbox --port 0 F", "sandbox F --port 0"),
        ("suppress --format json list", "suppress list --format json"),
        (
            "suppress --state j.db add +34600000001",
            "suppress add +34600000001 --state j.db",
        ),
        ("-v run F", "run F -v"),
        ("-v suppress list", "suppress list -v"),
    ],
)
def test_the_same_line_in_either_order(campaign: str, before: str, after: str) -> None:
    def sub(line: str) -> list[str]:
        return [campaign if w == "F" else w for w in line.split()]

    a, b = parsed(sub(before)), parsed(sub(after))
    assert same(a, b), (vars(a), vars(b))


def test_resume_before_the_file_continues_the_last_run(campaign: str) -> None:
    args = parsed(["run", "--resume", campaign])
    assert (args.file, args.resume) == (campaign, "last")
    # a run id given is still the option's value
    args = parsed(["run", "--resume", "20261203T065744-87c76b", campaign])
    assert (args.file, args.resume) == (campaign, "20261203T065744-87c76b")


def test_resume_without_a_file_still_says_the_file_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--resume", "20261203T065744-87c76b"]) == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: FILE" in err


def test_a_wrong_option_value_is_reported_as_argparse_reads_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["suppress", "--format", "xml", "list"]) == 2
    err = capsys.readouterr().err
    assert "argument --format: invalid choice: 'xml'" in err
    assert "Traceback" not in err


def test_v_counts_before_and_after_the_command() -> None:
    args = parsed(["-v", "validate", "x.yaml", "-v"])
    assert args.verbose + args.command_verbose == 2


def test_real_runs_with_the_options_after_and_before_the_file(
    campaign: str, tmp_path: Path
) -> None:
    state = str(tmp_path / "j.db")
    r = cli("run", campaign, "--sandbox", "--now", "-v", "--state", state, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "INFO " in r.stderr  # -v after the command turned logging up
    # --resume before the file: the file is read as the file, and there is no
    # unfinished run left to continue
    r = cli("run", "--resume", campaign, "--sandbox", "--state", state, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no unfinished run of campaign 'promo' to resume" in r.stderr
    r = cli("suppress", "--state", state, "--format", "json", "list", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
