"""``campaign-runner sandbox``: the emulators on their own, for manual rehearsals."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TextIO

from runner.errors import UsageError
from runner.sandbox import EMULATORS
from runner.sandbox.faults import FaultPlan
from runner.sandbox.server import Sandbox


def serve(
    files: list[Path], port: int, faults: str | None, settle: float, out: TextIO
) -> int:
    from runner.commands.run import resolve_options
    from runner.loader.load import load_campaign

    sandbox = Sandbox(port=port)
    if faults:
        try:
            sandbox.faults = FaultPlan.parse(faults).injector()
        except ValueError as e:
            raise UsageError(f"--faults: {e}") from e
    for path in files:
        campaign, _ = load_campaign(path, env=os.environ)
        resolved, _ = resolve_options(campaign, os.environ, sandbox=True)
        for name, cfg in campaign.providers.items():
            emulator_cls = EMULATORS.get(cfg.type)
            if emulator_cls is None:
                continue
            mount = name if name not in sandbox.emulators else f"{campaign.name}-{name}"
            urls = sandbox.mount(mount, emulator_cls(resolved[name], settle=settle))
            out.write(f"{campaign.name}: providers.{name} ({cfg.type})\n")
            for key, url in urls.items():
                out.write(f"    {key}: {url}\n")
    sandbox.start()
    out.write(f"sandbox listening on {sandbox.root} (Ctrl-C to stop)\n")
    out.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0
