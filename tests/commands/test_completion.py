"""``campaign-runner completion``: scripts that the shells accept and that complete."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from runkit import cli

from runner.cli import COMMANDS


def script(shell: str) -> str:
    r = cli("completion", shell)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    return r.stdout


def complete_bash(path: Path, *words: str, cwd: Path) -> list[str]:
    """What bash offers for the last of ``words`` after ``campaign-runner``."""
    words_ = " ".join(f"'{w}'" for w in ("campaign-runner", *words))
    line = (
        f"source '{path}'; COMP_WORDS=({words_}); COMP_CWORD={len(words)}; "
        '_shtab_campaign_runner; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    r = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, cwd=cwd, timeout=30
    )
    assert r.returncode == 0, r.stderr
    return sorted(filter(None, r.stdout.splitlines()))


def test_bash_script_is_valid_and_completes_commands_options_and_files(
    tmp_path: Path,
) -> None:
    text = script("bash")
    path = tmp_path / "campaign-runner.bash"
    path.write_text(text)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    for name in COMMANDS:  # every command, built from the whole parser
        assert name in text
    for option in ("--sandbox", "--resume", "--format", "--provider", "--show-phones"):
        assert option in text
    assert "complete -o bashdefault -F _shtab_campaign_runner campaign-runner" in text
    (tmp_path / "spring.yaml").write_text("")
    assert complete_bash(path, "ru", cwd=tmp_path) == ["run"]
    assert complete_bash(path, "s", cwd=tmp_path) == [
        "sandbox",
        "schema",
        "show",
        "status",
        "suppress",
    ]
    assert complete_bash(path, "run", "--sa", cwd=tmp_path) == ["--sandbox"]
    assert complete_bash(path, "run", "spr", cwd=tmp_path) == ["spring.yaml"]
    assert complete_bash(path, "new", "x", "--provider", "t", cwd=tmp_path) == [
        "tatango",
        "tellody",
    ]
    assert complete_bash(path, "suppress", "l", cwd=tmp_path) == ["list"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_the_commands(shell: str, tmp_path: Path) -> None:
    text = script(shell)
    for word in ("validate", "run", "sandbox", "resume", "mailup"):  # fish: -l resume
        assert word in text
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed: its syntax check is skipped")
    path = tmp_path / f"campaign-runner.{shell}"
    path.write_text(text)
    check = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_an_unknown_shell_is_a_usage_error() -> None:
    r = cli("completion", "tcsh")
    assert r.returncode == 2
    assert "invalid choice: 'tcsh'" in r.stderr
