"""``campaign-runner sandbox``, and the emulators for ``run``/``daemon --sandbox``.

The only module outside the sandbox package that imports it: rehearsals start
their emulators through ``start_emulators`` here.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from runner.errors import UsageError
from runner.loader.load import load_campaign
from runner.model.campaign import Campaign
from runner.providers.setup import resolve_options
from runner.sandbox import EMULATORS
from runner.sandbox.faults import FaultPlan
from runner.sandbox.launch import start_for
from runner.sandbox.server import Sandbox


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="campaigns whose providers to emulate"
    )
    p.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)"
    )
    p.add_argument(
        "--faults", metavar="SPEC", help="fault injection, e.g. http_503=0.1,timeout=0.02"
    )
    p.add_argument(
        "--settle", type=float, default=1.0, help="seconds before a delivery is final"
    )


def main(args: argparse.Namespace) -> int:
    """Run the provider emulators standalone on 127.0.0.1 until Ctrl-C.

    Each provider of the given campaigns gets an emulator that accepts the
    credentials the campaign resolves from the environment (a stand-in value
    for a variable that is not set); the URLs to use are printed.
    """
    return serve(
        [Path(f) for f in args.files], args.port, args.faults, args.settle, sys.stdout
    )


def start_emulators(
    campaign: Campaign,
    resolved: Mapping[str, Mapping[str, Any]],
    *,
    settle: float = 1.0,
    faults: str | None = None,
) -> tuple[Sandbox, dict[str, dict[str, str]]]:
    """Emulators for ``campaign`` on 127.0.0.1, and the URLs to point it at."""
    try:
        plan = FaultPlan.parse(faults, campaign.sandbox.seed) if faults else None
    except ValueError as e:
        raise UsageError(f"--faults: {e}") from e
    return start_for(campaign, resolved, settle=settle, faults=plan)


def serve(
    files: list[Path], port: int, faults: str | None, settle: float, out: TextIO
) -> int:
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
