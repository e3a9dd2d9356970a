"""What ``pause``, ``resume`` and ``cancel`` share: find the run, write the
request to the journal, and wait (briefly) for the run's process to act on it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from runner.commands.args import add_state
from runner.commands.output import open_journal
from runner.engine.control import request, who
from runner.journal.journal import Journal

# the state a request leads to, once the run's process has acted on it
REACHED = {"pause": ("paused",), "resume": ("running",), "cancel": ("cancelled",)}
WAIT = 5.0  # seconds to wait for a live process to act (it polls every 0.25 s)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        metavar="NAME|RUN_ID",
        help="a run id, or a campaign name (its unfinished run)",
    )
    add_state(p)


def control_main(action: str, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    journal = open_journal(args.state)
    try:
        answer = request(journal, args.run, action, who())
        out.write(answer.message + "\n")
        out.flush()
        if answer.live:
            out.write(_acted(journal, answer.run_id, action) + "\n")
    finally:
        journal.close()
    return 0


def _acted(journal: Journal, run_id: str, action: str) -> str:
    """One line: the run's state once its process acted, or that it has not yet."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        run = journal.get_run(run_id) or {}
        status = str(run.get("status"))
        if status in REACHED[action]:
            counts = journal.message_counts(run_id)
            figures = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            return f"run {run_id}: {status}" + (f" [{figures}]" if figures else "")
        time.sleep(0.1)
    return (
        f"run {run_id}: asked; its process has not acted yet (it does when the "
        "step under way lets it: a call, or a report being read)"
    )
