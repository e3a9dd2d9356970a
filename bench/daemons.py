"""Several daemons on one PostgreSQL: one send step's throughput as daemons join.

Prints a table (not a test). The sandbox runs in its own process; PostgreSQL is a
local server with fsync on (tests/pgkit.py starts it, as the test suite does);
each daemon is a real ``campaign-runner daemon`` process watching the same folder.

    python bench/daemons.py                      # N=10000, 1, 2 and 3 daemons
    python bench/daemons.py --n 20000 --daemons 1,3 --cases cpu

Cases (issue 15): cpu (no added latency; msg/s over the whole step, beside one
``run`` on SQLite measured in the same run), latency (50 ms per request, the
campaign's concurrency 32 shared by all daemons: ceiling 640 msg/s, whatever the
number of daemons). Each line also checks that every recipient got exactly one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from throughput import ROOT, SandboxProcess, run_runner, write_campaign

sys.path.insert(0, str(ROOT / "tests"))


def step_figures(state: str, run_id: str) -> tuple[int, float]:
    """(messages sent, seconds from the step's start to its end), from the journal."""
    from runner.journal.journal import Journal
    from runner.journal.where import locate

    j = Journal(locate(state))
    try:
        step = j.step_status(run_id)["blast"]
        sent = len(j.messages_for(run_id, "blast", ["sent"]))
    finally:
        j.close()
    started = datetime.fromisoformat(step["started_at"])
    finished = datetime.fromisoformat(step["finished_at"])
    return sent, (finished - started).total_seconds()


def finished_run(state: str) -> str | None:
    from runner.journal.journal import Journal
    from runner.journal.where import locate

    j = Journal(locate(state))
    try:
        runs = j.list_runs(limit=10)
    finally:
        j.close()
    for r in runs:
        if r["status"] not in ("running", "scheduled", "pending"):
            if r["status"] != "succeeded":
                raise SystemExit(f"daemon run ended {r['status']}")
            return str(r["id"])
    return None


def with_daemons(
    k: int, urls: dict[str, str], n: int, url: str, tmp: Path
) -> tuple[int, float]:
    """k daemons on one journal, one campaign due in a few seconds; step figures."""
    folder = tmp / f"folder-{k}"
    folder.mkdir()
    campaign = write_campaign(folder, "mailup", urls, n, concurrency=32, rate=None)
    at = (datetime.now(UTC) + timedelta(seconds=4 + k)).isoformat(timespec="seconds")
    campaign.write_text(campaign.read_text() + f"schedule: {{at: '{at}'}}\n")
    daemons = [
        subprocess.Popen(
            [sys.executable, "-m", "runner", "daemon", str(folder), "--state", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
            env={**os.environ},
        )
        for _ in range(k)
    ]
    try:
        deadline = time.monotonic() + 60 + n / 50
        while (run_id := finished_run(url)) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"{k} daemons: the run did not finish")
            if any(d.poll() is not None for d in daemons):
                raise SystemExit(f"{k} daemons: a daemon exited")
            time.sleep(0.5)
    finally:
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        for d in daemons:
            try:
                d.wait(timeout=30)
            except subprocess.TimeoutExpired:
                d.kill()
    return step_figures(url, run_id)


def received(sb: SandboxProcess) -> list[str]:
    """The numbers the provider accepted a message for, in order of arrival."""
    import requests

    got = requests.get(sb.root + "/_sandbox/messages", timeout=30).json()
    return [m["to"] for m in got["main"]]


def once_each(numbers: list[str], n: int) -> str:
    """Every recipient exactly once: what the provider saw of the daemons' run."""
    got = Counter(numbers)
    twice = sum(1 for v in got.values() if v > 1)
    return f"{len(got)}/{n} recipients, {twice} twice"


def case(latency: float, n: int, counts: list[int]) -> list[str]:
    from pgkit import PostgresServer

    server = PostgresServer(durable=True)
    sb = SandboxProcess({"main": "mailup"}, latency=latency)
    lines = []
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            c = write_campaign(
                tmp, "mailup", sb.urls["main"], n, concurrency=32, rate=None
            )
            lite = run_runner(c, tmp / "j.db")
            pg = run_runner(c, server.new_database())
            base, on_pg = lite["sent"] / lite["step_s"], pg["sent"] / pg["step_s"]
            ceiling = 32 / latency if latency else 0.0
            what = f"latency {latency * 1000:.0f} ms" if latency else "cpu-bound"
            lines.append(
                f"{what}: one run on SQLite {base:.0f} msg/s "
                f"({1e6 / base:.0f} us a message), one run on PostgreSQL {on_pg:.0f} "
                f"msg/s ({1e6 / on_pg:.0f} us) = {on_pg / base:.2f} x SQLite"
                + (f"; ceiling {ceiling:.0f} msg/s" if latency else "")
            )
            print(lines[-1], flush=True)
            for k in counts:
                before = len(received(sb))
                sent, secs = with_daemons(
                    k, sb.urls["main"], n, server.new_database(), tmp
                )
                rate = sent / secs
                seen = once_each(received(sb)[before:], n)
                lines.append(
                    f"{what}: {k} daemon(s) on PostgreSQL {rate:.0f} msg/s = "
                    f"{rate / base:.2f} x one run on SQLite"
                    + (f", {rate / ceiling:.2f} x ceiling" if latency else "")
                    + f"; provider saw {seen}"
                )
                print(lines[-1], flush=True)
    finally:
        sb.close()
        server.stop()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--daemons", default="1,2,3")
    ap.add_argument("--cases", default="cpu,latency")
    args = ap.parse_args()
    counts = [int(k) for k in args.daemons.split(",")]
    for name in args.cases.split(","):
        if name not in ("cpu", "latency"):
            raise SystemExit(f"unknown case {name!r}: cpu, latency")
        case(0.05 if name == "latency" else 0.0, args.n, counts)


if __name__ == "__main__":
    main()
