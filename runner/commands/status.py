"""``campaign-runner status``: next scheduled runs and runs in progress.

Everything comes from the journal (the daemon's job table and the runs) plus
the daemon's lock file, so it works whether or not a daemon is running, and from
another shell than the daemon's; each run in progress names its owner (a daemon
or a `run`, pid, host, since) from the campaign leases.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from runner.commands.args import add_format, add_state
from runner.commands.output import Zone
from runner.errors import UsageError
from runner.journal.daemons import DaemonRow
from runner.journal.journal import Journal
from runner.journal.leases import Holder
from runner.journal.lock import lock_owner, lock_path
from runner.journal.schedule import (
    InProgress,
    Scheduled,
    runs_in_progress,
    scheduled_runs,
)
from runner.journal.where import Where, locate


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_state(p)
    add_format(p)
    p.add_argument(
        "--utc", action="store_true", help="times in UTC (default: this machine's zone)"
    )


def main(args: argparse.Namespace) -> int:
    """Show the daemon's next scheduled runs and the runs in progress.

    Every time is in one zone, named in the header: this machine's, or UTC with
    --utc. The JSON keeps ISO times with their offsets.
    """
    return show_status(args.state, args.format, sys.stdout, utc=args.utc)


@dataclass(frozen=True)
class Status:
    daemon_running: bool
    daemon_pid: int | None
    scheduled: tuple[Scheduled, ...]
    in_progress: tuple[InProgress, ...]
    owners: tuple[Holder, ...] = ()  # who is sending which campaign now
    daemons: tuple[DaemonRow, ...] = ()  # every daemon heard of lately


def read_status(state: Path | Where) -> Status:
    where = state if isinstance(state, Where) else Where(path=state)
    running, pid = (
        lock_owner(lock_path(where.path)) if where.path is not None else (False, None)
    )
    journal = Journal(where)
    try:
        return Status(
            running,
            pid,
            tuple(scheduled_runs(journal)),
            tuple(runs_in_progress(journal)),
            tuple(journal.live_leases()),
            tuple(journal.daemons_now()),
        )
    finally:
        journal.close()


def show_status(state: str | None, fmt: str, out: TextIO, *, utc: bool = False) -> int:
    """Print the daemon's schedule and the unfinished runs; 0 unless no journal."""
    path = locate(state)
    if not path.exists():
        raise UsageError(f"no journal at {path} (nothing has run yet, or pass --state)")
    status = read_status(path)
    if fmt == "json":
        json.dump(_as_json(status), out, indent=2, default=str)
        out.write("\n")
        return 0
    zone = Zone.chosen(utc)
    t = zone.show
    hint = "" if utc else " (this machine's zone; --utc for UTC)"
    out.write(f"times in {zone.name}{hint}\n")
    if status.daemons:
        out.write("daemons:\n")
        for d in status.daemons:
            state = d.role if d.alive() else "gone"
            out.write(
                f"  {d.host} pid {d.pid}  {state}  since {t(d.started_at)}  last seen "
                f"{t(d.heartbeat_at)}  runs {d.active_runs}  in flight {d.in_flight}\n"
            )
    else:
        who = f" (pid {status.daemon_pid})" if status.daemon_pid else ""
        running = "running" + who if status.daemon_running else "not running"
        out.write(f"daemon: {running}\n")
    out.write(f"journal: {path}\n\n")
    if status.scheduled:
        out.write("next scheduled runs:\n")
        for s in status.scheduled:
            when = t(s.next_run) if s.next_run else "paused"
            out.write(f"  {when}  {s.campaign}  {s.path}\n")
    else:
        out.write("next scheduled runs: none\n")
    owners = {h.run_id: h for h in status.owners}
    if status.in_progress:
        out.write("runs in progress:\n")
        for r in status.in_progress:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
            note = " (resumable)" if r.status == "interrupted" else ""
            mode = {"sandbox": "rehearsal", "test": "test"}.get(r.mode, "real")
            out.write(
                f"  {r.run_id}  {r.campaign}  {mode}  {r.status}{note}  "
                f"since {t(r.started_at)}" + (f"  [{counts}]" if counts else "") + "\n"
            )
            if r.control:
                out.write(f"      {r.control} by {r.control_by} at {t(r.control_at)}\n")
            owner = owners.get(r.run_id)
            if owner is not None:
                out.write(
                    f"      owner: {owner.owner} pid {owner.pid} on {owner.host} "
                    f"since {t(owner.since)}\n"
                )
    else:
        out.write("runs in progress: none\n")
    return 0


def _as_json(status: Status) -> dict[str, Any]:
    return {
        "daemon": {"running": status.daemon_running, "pid": status.daemon_pid},
        "scheduled": [
            {
                **asdict(s),
                "next_run": s.next_run.isoformat() if s.next_run else None,
            }
            for s in status.scheduled
        ],
        "in_progress": [asdict(r) for r in status.in_progress],
        "owners": [asdict(h) for h in status.owners],
        "daemons": [{**asdict(d), "alive": d.alive()} for d in status.daemons],
    }
