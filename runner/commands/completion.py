"""``campaign-runner completion``: a shell's completion script, made by shtab."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import shtab

SHELLS = ("bash", "zsh", "fish")
# The command needs the whole parser, every command's arguments: cli.py passes
# its builder as ``args.parser`` to the commands that say they want it.
WANTS_PARSER = True
# what a value is, by its metavar: files and folders complete from the disk
FILES = {"FILE", "PATH"}
FOLDERS = {"DIR"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def main(args: argparse.Namespace) -> int:
    """Print the shell completion script for bash, zsh or fish (see the README
    for where each shell reads it)."""
    build: Callable[[], argparse.ArgumentParser] = args.parser
    sys.stdout.write(completion_script(build(), args.shell))
    return 0


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The script for ``shell``: commands, options, choices, and files or folders
    where an argument names one."""
    _mark_paths(parser)
    script: str = shtab.complete(parser, shell=shell)
    return script if script.endswith("\n") else script + "\n"


def _mark_paths(parser: argparse.ArgumentParser) -> None:
    """Files and folders complete from the disk; descriptions are one line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                # fish shows a command's description beside it: its first line
                sub.description = (sub.description or "").split("\n", 1)[0] or None
                _mark_paths(sub)
        elif action.metavar in FILES:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.metavar in FOLDERS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
