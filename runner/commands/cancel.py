"""``campaign-runner cancel``: end a run for good from any terminal."""

from __future__ import annotations

import argparse

from runner.commands.control import add_arguments, control_main

__all__ = ["add_arguments", "main"]


def main(args: argparse.Namespace) -> int:
    """Cancel a run: calls under way finish, queued messages become `cancelled`.

    The run ends `cancelled` (its `run` process exits 5).
    """
    return control_main("cancel", args)
