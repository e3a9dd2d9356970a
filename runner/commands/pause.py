"""``campaign-runner pause``: stop a run's sending from any terminal, for now."""

from __future__ import annotations

import argparse

from runner.commands.control import add_arguments, control_main

__all__ = ["add_arguments", "main"]


def main(args: argparse.Namespace) -> int:
    """Pause a run (started by `run` anywhere, or by the daemon): nothing new is sent.

    Calls under way finish and are recorded; queued messages wait for `resume`.
    """
    return control_main("pause", args)
