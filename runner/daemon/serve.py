"""The daemon process: its lock, journal, logs and HTTP endpoints around a Daemon."""

from __future__ import annotations

import dataclasses
from typing import TextIO

from runner.daemon.http import MetricsServer, parse_address
from runner.daemon.logs import LogEcho, SharedRedactor, quiet_scheduler_logs
from runner.daemon.service import Daemon
from runner.daemon.settings import DaemonSettings, Emulate
from runner.errors import UsageError
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.journal.lock import StateLock, lock_path
from runner.journal.store import default_path, event_log_path


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
    journal_path = settings.state or default_path()
    lock = StateLock(lock_path(journal_path))
    lock.acquire()
    try:
        journal = Journal(journal_path)
        log_path = settings.log or event_log_path(journal_path)
        json_logs = settings.log_format == "json"
        redactors = SharedRedactor()
        echo = LogEcho(out if json_logs else err, human=not json_logs)
        log = EventLog(log_path, redact=redactors)
        log.listen(echo)
        _ = journal.writer  # one writer thread, created before runs share it
        quiet_scheduler_logs()
        daemon = Daemon(settings, journal, log, redactors, err, emulate)
        server = None
        try:
            if settings.http:
                server = MetricsServer(settings.http, journal, daemon.health).start()
                log.emit("http.listening", url=server.url)
            with daemon.signals():
                return daemon.run()
        finally:
            if server is not None:
                server.stop()
            log.close()
            journal.close()
    finally:
        lock.release()
