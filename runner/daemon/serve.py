"""The daemon process: its lock, journal, logs and HTTP endpoints around a Daemon."""

from __future__ import annotations

import dataclasses
from typing import TextIO

from runner.daemon.http import MetricsServer, parse_address
from runner.daemon.leader import Leadership
from runner.daemon.logs import LogEcho, SharedRedactor, quiet_scheduler_logs
from runner.daemon.service import Daemon
from runner.daemon.settings import DaemonSettings, Emulate
from runner.errors import UsageError
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.lock import StateLock, lock_path
from runner.journal.where import locate


def serve(
    settings: DaemonSettings,
    *,
    out: TextIO,
    err: TextIO,
    emulate: Emulate | None = None,
) -> int:
    """Take the journal's lock, then run the daemon until it is told to stop."""
    for folder in settings.folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such directory")
    if settings.http:
        parse_address(settings.http)  # a usage error before any state is touched
    settings = dataclasses.replace(
        settings, folders=tuple(f.resolve() for f in settings.folders)
    )
    where = locate(settings.state)
    # one daemon per SQLite journal; on PostgreSQL, see runner.daemon.leader
    lock = StateLock(lock_path(where.path)) if where.path is not None else None
    if lock is not None:
        lock.acquire()
    try:
        journal = Journal(where)
        log_path = settings.log or where.beside("events.jsonl")
        json_logs = settings.log_format == "json"
        redactors = SharedRedactor()
        echo = LogEcho(out if json_logs else err, human=not json_logs)
        log = EventLog(log_path, redact=redactors)
        log.listen(echo)
        _ = journal.writer  # one writer thread, created before runs share it
        quiet_scheduler_logs()
        leadership = Leadership(journal.engine) if where.shared else None
        daemon = Daemon(settings, journal, log, redactors, err, emulate, leadership)
        server = None
        try:
            if settings.http:
                server = MetricsServer(settings.http, journal, daemon.health).start()
                log.emit("http.listening", url=server.url)
                if not settings.callback_url:  # providers call --http itself
                    daemon.settings = dataclasses.replace(
                        settings, callback_url=server.url
                    )
            with daemon.signals():
                return daemon.run()
        finally:
            if server is not None:
                server.stop()
            if leadership is not None:
                leadership.release()
            log.close()
            journal.close()
    finally:
        if lock is not None:
            lock.release()
