"""What the daemon continues: the unfinished runs of its folders' files, with the
options they started with."""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from runner.daemon.settings import DaemonSettings
from runner.daemon.watch import campaign_files
from runner.engine.context import RunOptions
from runner.journal.journal import Journal
from runner.journal.tables import runs


def run_options(
    journal: Journal, settings: DaemonSettings, resume: str | None
) -> RunOptions:
    """A new run's options, or the stored options of the run being resumed."""
    base = RunOptions()
    if resume is not None:
        stored = journal.get_run(resume) or {}
        try:
            saved = json.loads(stored.get("options") or "{}")
        except ValueError:
            saved = {}
        names = {f.name for f in dataclasses.fields(RunOptions)}
        base = RunOptions(**{k: v for k, v in saved.items() if k in names})
        base = dataclasses.replace(base, resume=resume)
    args = (f" --state {shlex.quote(str(settings.state))}" if settings.state else "") + (
        " --sandbox" if settings.sandbox else ""
    )
    base = dataclasses.replace(
        base, command_args=args, callback_url=settings.callback_url
    )
    if resume is None and settings.per_recipient:
        base = dataclasses.replace(
            base, per_recipient=settings.per_recipient, on_cap=settings.on_cap
        )
    if settings.sandbox and base.max_poll_interval is None:
        # the emulators settle in about a second: poll reports briskly
        base = dataclasses.replace(base, max_poll_interval=settings.settle)
    return base


def unfinished_runs(
    journal: Journal, folders: Iterable[Path], *, orphans: bool = False
) -> list[tuple[str, str]]:
    """(file, run id) of the latest unfinished run of each file in the folders.

    ``orphans``: only runs left ``running`` or ``paused`` by a process that died
    (nobody holds their campaign's lease): another daemon's, or a ``run``'s.
    """
    files = {str(p) for p in campaign_files(folders)}
    states = ["running", "paused"] if orphans else ["running", "paused", "interrupted"]
    with journal.connect() as conn:
        rows = list(
            conn.execute(
                sa.select(runs.c.id, runs.c.campaign_path, runs.c.campaign)
                .where(runs.c.status.in_(states), runs.c.mode != "test")
                .order_by(runs.c.started_at)
            )
        )
    latest = {path: (run_id, name) for run_id, path, name in rows if path in files}
    return sorted(
        (path, run_id)
        for path, (run_id, name) in latest.items()
        if not orphans or journal.lease_of(name) is None
    )
