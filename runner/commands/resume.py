"""``campaign-runner resume``: let a paused run send again."""

from __future__ import annotations

import argparse

from runner.commands.control import add_arguments, control_main

__all__ = ["add_arguments", "main"]


def main(args: argparse.Namespace) -> int:
    """Resume a paused run: its process sends the rest, nothing twice."""
    return control_main("resume", args)
