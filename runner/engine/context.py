"""What a run carries from step to step: its options, context and step results.

A module of its own so that the step implementations and the run that calls
them both import it, and neither imports the other's caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.audience.recipient import RecipientStats
from runner.engine.control import EXIT_CANCELLED as EXIT_CANCELLED  # re-exported
from runner.engine.control import RunControl
from runner.engine.ratelimit import Limiter
from runner.journal.eventlog import EventLog
from runner.journal.journal import Journal
from runner.model.campaign import Campaign
from runner.providers.base import Provider

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
# messages whose outcome is unknown are left: a person must decide (``retry``)
EXIT_UNSETTLED = 4


@dataclass(frozen=True)
class RunOptions:
    now: bool = False  # ignore at/after/wait (rehearsal)
    ignore_windows: bool = False
    dry_run: bool = False
    resume: str | None = None  # run id to resume
    resend_unknown: bool = False
    show_phones: bool = False
    max_poll_interval: float | None = None  # rehearsals on the sandbox poll faster
    # only these steps are carried out (a retry); the others keep their results
    only_steps: frozenset[str] | None = None
    provider: str | None = None  # a retry through this provider instead
    # what a command given to people must add to name this journal and mode,
    # e.g. " --state /var/lib/x.db --sandbox"
    command_args: str = ""
    occurrence: str | None = None  # a new run's (runner.engine.occurrence)
    # limits for campaigns that set none (the daemon's configuration): as written,
    # e.g. "1/24h", so that a resumed run's stored options keep them
    per_recipient: str | None = None
    on_cap: str = "skip"  # skip | defer
    # a PIN step appends phone,pin here as each PIN comes back (this run only:
    # never carried to a resumed run, which must ask again)
    export_pins: str | None = None
    # where providers reach this process's callback endpoint (the daemon's
    # --callback-url); None: no callbacks, reports are polled
    callback_url: str | None = None


@dataclass
class StepResult:
    # succeeded | failed | unsettled | skipped | paused | interrupted | cancelled
    status: str
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    resume_at: datetime | None = None  # paused: when to continue


@dataclass
class RunContext:
    """Everything a step implementation may use; built once per run."""

    campaign: Campaign
    run_id: str
    journal: Journal
    log: EventLog
    providers: Mapping[str, Provider]
    limiters: Mapping[str, Limiter]
    options: RunOptions
    stop: threading.Event
    results: dict[str, StepResult] = field(default_factory=dict)
    recipient_stats: RecipientStats | None = None  # of the last plan
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # the campaign file changed since the run's messages were planned: what was
    # never called is rendered again
    rerender: bool = False
    # pause/cancel requests from any terminal (None: nobody can ask, e.g. a dry run)
    control: RunControl | None = None

    def halted(self) -> bool:
        """Nothing new may start: stopped, paused or cancelled."""
        return self.stop.is_set() or (self.control is not None and self.control.halted())


@dataclass(frozen=True)
class RunResult:
    run_id: str
    exit_code: int
    results: Mapping[str, StepResult]
