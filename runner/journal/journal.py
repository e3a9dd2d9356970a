"""The journal: who got what, when, and what happened.

Exactly-once rests here: a message row is committed as ``pending`` (the intent)
before its provider call is made, and its outcome (``sent``, ``failed``,
``unknown``) is written after. A crash can only lose outcomes, never intents, so
a resumed run knows every call that may have been made. Writes on the hot path
go through one writer thread (``Journal.writer``) that batches commits; reads
use short connections.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from runner.journal.callbacks import CallbackRecords
from runner.journal.daemons import DaemonRecords, DaemonRow
from runner.journal.leases import LeaseRecords
from runner.journal.messages import MessageRecords
from runner.journal.queries import Reads
from runner.journal.runs import RunRecords
from runner.journal.skipped import SkippedRecords
from runner.journal.suppressions import SuppressionRecords, ZoneRecords
from runner.journal.where import Where
from runner.journal.workers import Worker, WorkerRecords
from runner.journal.writer import JournalWriter


class Journal(
    RunRecords,
    MessageRecords,
    LeaseRecords,
    DaemonRecords,
    WorkerRecords,
    SuppressionRecords,
    ZoneRecords,
    CallbackRecords,
    SkippedRecords,
    Reads,
):
    """Runs, steps and messages of one journal database, and its writer thread."""

    def __init__(self, path: Path | Where | None = None, url: str | None = None) -> None:
        super().__init__(path, url)
        self._writer: JournalWriter | None = None
        self._worker: Worker | None = None
        self._worker_lock = threading.Lock()

    @property
    def writer(self) -> JournalWriter:
        """The batched writer thread of this journal (started on first use)."""
        if self._writer is None:
            self._writer = JournalWriter(self)
        return self._writer

    @property
    def worker(self) -> Worker:
        """This process's row among the senders (registered on first use)."""
        with self._worker_lock:
            if self._worker is None:
                self._worker = Worker(self)
            return self._worker

    @property
    def shared(self) -> bool:
        """Other processes may send the same step: a journal on a server."""
        return self.engine.dialect.name == "postgresql"

    def daemons_now(self) -> list[DaemonRow]:
        """Every daemon heard of lately, each with the messages it has in calls."""
        flight: dict[str, int] = {}
        for worker, n in self.in_flight_by_worker().items():
            daemon = ":".join(worker.split(":", 2)[:2])  # of host:pid:started
            flight[daemon] = flight.get(daemon, 0) + n
        return [replace(d, in_flight=flight.get(d.id, 0)) for d in self.daemon_rows()]

    def settle_interrupted(self, run_id: str, step_id: str) -> int:
        """Pending messages of the step no live send of any process owns become
        ``unknown`` (a crash, a ``kill -9``, a send that ended unrecorded)."""
        w = self.worker
        return self.settle_dead_claims(run_id, step_id, w.id, w.active())

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        super().close()
