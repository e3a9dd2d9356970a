"""Run the sandbox in its own process for benchmarks: prints one JSON line of URLs.

Usage: python bench/sandbox_proc.py '<json config>'; config = {"latency": s,
"providers": {name: {"type": t, "credentials": {...}}}, "credits": n}.
The process serves until stdin closes (the benchmark ends it).
"""

from __future__ import annotations

import json
import sys

from runner.sandbox import EMULATORS
from runner.sandbox.server import Sandbox


def main() -> None:
    config = json.loads(sys.argv[1])
    sandbox = Sandbox()
    sandbox.latency = float(config.get("latency", 0.0))
    urls = {}
    for name, spec in config["providers"].items():
        emulator = EMULATORS[spec["type"]](
            spec["credentials"], credits=float(config.get("credits", 1e9)), settle=0.5
        )
        urls[name] = sandbox.mount(name, emulator)
    sandbox.start()
    print(json.dumps({"root": sandbox.root, "urls": urls}), flush=True)
    sys.stdin.read()  # until the parent closes the pipe
    sandbox.stop()


if __name__ == "__main__":
    main()
