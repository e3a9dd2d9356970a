"""What the daemon is started with: its command line, and the emulators it may
start for a rehearsal (``daemon --sandbox``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class DaemonSettings:
    """The daemon's command line."""

    folders: tuple[Path, ...]
    # journal path or postgresql:// URL; None: $CAMPAIGN_RUNNER_STATE or XDG state
    state: Path | str | None = None
    log: Path | None = None  # event log; None: events.jsonl beside the journal
    sandbox: bool = False
    http: str | None = None  # HOST:PORT for /healthz and /metrics
    # the public address of --http for providers' callbacks (a reverse proxy);
    # None: --http itself
    callback_url: str | None = None
    log_format: str = "text"  # text (stderr) | json (stdout)
    misfire_grace: timedelta = timedelta(minutes=5)  # unless the campaign says
    poll: float = 2.0  # seconds between folder scans
    settle: float = 1.0  # sandbox: seconds before a delivery is final
    stop_timeout: float = 60.0  # SIGTERM: how long active runs get to wind down
    # limits.per_recipient (and on_cap) for campaigns that set none
    per_recipient: str | None = None
    on_cap: str = "skip"


class Emulators(Protocol):
    """What the daemon needs of a rehearsal's emulators: where, and to stop them."""

    @property
    def root(self) -> str: ...

    def stop(self) -> None: ...


# (campaign, resolved provider options, settle=seconds) -> emulators, and per
# provider the URL options that point at them
Emulate = Callable[..., tuple[Emulators, dict[str, dict[str, str]]]]
