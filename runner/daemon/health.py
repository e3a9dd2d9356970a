"""The daemon's live state, as ``/healthz`` and the live gauges report it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Health:
    """The daemon's live state, as ``/healthz`` and the gauges report it."""

    scheduler_running: bool
    stopping: bool = False
    campaigns: int = 0  # campaign files scheduled
    active_runs: tuple[str, ...] = ()  # campaign names with a run in progress
    next_fire: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # (campaign name, file) -> unix seconds
    # leader: it runs the schedule (the only daemon of a SQLite journal); standby:
    # another daemon of the same PostgreSQL journal leads, this one waits to
    role: str = "leader"

    @property
    def ok(self) -> bool:
        ready = self.scheduler_running or self.role == "standby"
        return ready and not self.stopping

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "role": self.role,
            "scheduler": "running" if self.scheduler_running else "stopped",
            "stopping": self.stopping,
            "campaigns": self.campaigns,
            "active_runs": len(self.active_runs),
            "running": sorted(self.active_runs),
        }
