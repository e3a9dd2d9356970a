"""The long-running scheduler for a folder of campaigns.

``watch`` finds campaign files and what changed, ``schedules`` keeps one
APScheduler job per scheduled file, ``service`` fires runs on their own threads
(through the engine's ``run_campaign``), ``serve`` wires the process;
``health``, ``metrics``, ``http`` and ``logs`` are what it shows the outside.
It may import every layer below it; never the commands or the sandbox (a
rehearsal's emulators are handed in by the daemon command).
"""

# Stored in every APScheduler job of existing journals as "runner.daemon:fire_campaign":
# the reference must keep resolving across releases.
from runner.daemon.service import fire_campaign

__all__ = ["fire_campaign"]
