"""Pause, resume and cancel from any terminal: requests written to the journal,
seen by the run's process within a second.

``request`` is what the ``pause``/``resume``/``cancel`` commands and the
daemon's HTTP endpoints call; ``RunControl`` is the running side, a thread that
reads the run's request every ``POLL`` seconds. A pause halts dispatch (calls
already made finish and are recorded, queued messages stay queued) until the
request is lifted; a cancel ends the run and its queued messages become
``cancelled``.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from dataclasses import dataclass

import sqlalchemy as sa

from runner.errors import UsageError
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.runs import UNFINISHED, Control

POLL = 0.25  # seconds between two reads of the run's request
EXIT_CANCELLED = 5  # someone cancelled the run (``campaign-runner cancel``)
ACTIONS = ("pause", "resume", "cancel")


def who() -> str:
    """The person and place a request comes from, as the journal records it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


class RunControl:
    """The running process's view of its run's pause/cancel requests."""

    def __init__(self, journal: Journal, log: EventLog, run_id: str) -> None:
        self.journal = journal
        self.log = log
        self.run_id = run_id
        self.changed = threading.Event()  # set whenever the request changes
        self._state = journal.control_of(run_id)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name=f"control:{run_id}", daemon=True
        )

    def start(self) -> RunControl:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def state(self) -> Control:
        return self._state

    def paused(self) -> bool:
        return self._state.state == "paused"

    def cancelled(self) -> bool:
        return self._state.state == "cancelled"

    def halted(self) -> bool:
        """Nothing new may start: paused or cancelled."""
        return self._state.state is not None

    def _watch(self) -> None:
        while not self._stop.wait(POLL):
            try:
                state = self.journal.control_of(self.run_id)
            except sa.exc.SQLAlchemyError:
                continue  # a busy journal: the next read retries
            if state != self._state:
                self._state = state
                self.changed.set()

    def wait_while_paused(self, stop: threading.Event) -> None:
        """Block while paused; returns on resume, cancel, or ``stop``.

        The run reads ``paused`` in the journal while it waits, with who asked.
        """
        if not self.paused():
            return
        held = self._state
        self.journal.set_status(self.run_id, "paused")
        self.log.emit("run.paused", self.run_id, by=held.by, at=held.at)
        while self.paused() and not stop.is_set():
            self.changed.wait(POLL)
            self.changed.clear()
        if not stop.is_set():
            self.journal.set_status(self.run_id, "running")
        if not self.paused() and not self.cancelled():
            self.log.emit("run.resumed", self.run_id, by=self._state.by)


@dataclass(frozen=True)
class Answer:
    """What a request did, in one line for people."""

    run_id: str
    message: str
    live: bool = False  # a process is running it and will act on the request


def find_run(journal: Journal, ref: str) -> dict[str, object]:
    """A run by id, or a campaign name's latest unfinished run."""
    run = journal.get_run(ref)
    if run is not None:
        return dict(run)
    for r in journal.list_runs(ref, limit=20):
        if r["status"] in UNFINISHED:
            return dict(r)
    if journal.list_runs(ref, limit=1):
        raise UsageError(f"campaign {ref!r} has no unfinished run")
    raise UsageError(f"no run or campaign {ref!r} in {journal.where}")


def request(journal: Journal, ref: str, action: str, by: str) -> Answer:
    """Pause, resume or cancel the run ``ref`` names (a run id or a campaign)."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    run = find_run(journal, ref)
    run_id, status = str(run["id"]), str(run["status"])
    campaign = str(run["campaign"])
    if status not in UNFINISHED:
        raise UsageError(f"run {run_id} has ended ({status}): nothing to {action}")
    holder = journal.lease_of(campaign)
    live = holder is not None and holder.run_id == run_id
    where = f"{holder.owner} pid {holder.pid} on {holder.host}" if holder else ""
    control = journal.control_of(run_id)
    if action == "pause":
        if control.state == "cancelled":
            raise UsageError(f"run {run_id} is being cancelled: it cannot be paused")
        journal.request_control(run_id, "paused", by)
        if live:
            return Answer(
                run_id,
                f"run {run_id} ({campaign}): pausing; its {where} starts no new "
                "call within a second (calls under way finish and are recorded)",
                live=True,
            )
        return Answer(
            run_id,
            f"run {run_id} ({campaign}) paused: no process is running it now, and "
            "none will send for it until it is resumed",
        )
    if action == "resume":
        if control.state != "paused":
            raise UsageError(f"run {run_id} is not paused")
        journal.request_control(run_id, None, by)
        if live:
            return Answer(
                run_id,
                f"run {run_id} ({campaign}): resuming; its {where} goes on",
                live=True,
            )
        return Answer(
            run_id,
            f"run {run_id} ({campaign}) resumed; no process is running it: "
            f"continue it with `campaign-runner run {run['campaign_path']}`",
        )
    journal.request_control(run_id, "cancelled", by)
    if live:
        return Answer(
            run_id,
            f"run {run_id} ({campaign}): cancelling; its {where} stops within a "
            "second and its queued messages become cancelled",
            live=True,
        )
    cancelled = cancel_now(journal, run_id, by)
    return Answer(
        run_id,
        f"run {run_id} ({campaign}) cancelled: {cancelled} queued messages will "
        "not be sent",
    )


def cancel_now(journal: Journal, run_id: str, by: str) -> int:
    """End a run no process is running: what was queued is ``cancelled``; what
    a crash left ``pending`` may have been sent and becomes ``unknown``."""
    for step_id in journal.step_status(run_id):
        journal.settle_interrupted(run_id, step_id)
    n = journal.cancel(run_id, None, None, f"cancelled by {by}")
    journal.finish_run(run_id, "cancelled", EXIT_CANCELLED)
    return n
