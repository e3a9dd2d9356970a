"""Large campaigns: memory, time to first message, planning rate, journal size and
read latency at a million recipients and more (issue 18).

Prints figures beside their targets (not a test). The recipients are the ones
bench/preview.py generates (numbers written several ways, 1% invalid, 2%
duplicates, 2% opted out, two language variants); the provider is MailUp's
emulator in its own process. ``run`` is stopped (SIGINT, as Ctrl-C)
``--send-seconds`` after both its first message and the end of its plan (which
goes on while it sends): the figures about sending itself are
bench/throughput.py's.

    python bench/scale.py                          # 1M
    python bench/scale.py --sizes 1000000,10000000 --send-seconds 10

Figures: peak PSS of the process tree (preview and run), time from ``run``
starting to its first message at the provider, planning recipients/s (until the
step's plan is committed), journal bytes per message (the database and its WAL
over the message rows), and the time ``history``, ``status``, ``show RUN`` take
(the command's own time: its ``--help``, measured in the same run, taken off:
the interpreter's start and the imports) and one ``/metrics`` scrape's journal reads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
from preview import generate
from preview import measure as measure_preview
from throughput import CREDS, ROOT, SandboxProcess

TARGETS = {
    "rss_mb": 200,
    "first_s": 5,
    "plan_rate": 100_000,
    "bytes_per_message": 200,
    "read_ms": 200,
}


def campaign(folder: Path, urls: dict[str, str]) -> Path:
    """bench/preview.py's campaign, sending through the MailUp emulator."""
    text = (folder / "campaign.yaml").read_text()
    head, _, rest = text.partition("providers:\n")
    _, _, rest = rest.partition("recipients:\n")
    lines = ["providers:", "  main:", "    type: mailup", "    concurrency: 16"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in {**urls, **CREDS["mailup"]}.items()]
    body = head + "\n".join(lines) + "\nrecipients:\n" + rest
    path = folder / "scale.yaml"
    path.write_text(body.replace("provider: tatango", "provider: main"))
    return path


class TreeMemory:
    """Peak PSS of a process and its children, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.peak = 0.0
        self._done = threading.Event()
        self._pid = pid
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        parent = psutil.Process(self._pid)
        while not self._done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                pss = sum(p.memory_full_info().pss for p in tree) / 2**20
                self.peak = max(self.peak, pss)
            except (psutil.Error, AttributeError):
                pass
            time.sleep(0.05)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak


def events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class Follow:
    """A growing file read as it grows (the event log, one event a message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def saw(self, text: bytes) -> bool:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return False
        cut = chunk.rfind(b"\n") + 1  # whole lines only
        self.offset += cut
        return text in chunk[:cut]


def first_sent(state: Path) -> float | None:
    """The wall time of the run's first message outcome, from the journal."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute(
                "SELECT min(sent_at) FROM messages WHERE status = 'sent'"
            ).fetchone()
    except sqlite3.Error:
        return None
    return datetime.fromisoformat(row[0]).timestamp() if row and row[0] else None


def run_case(folder: Path, n: int, send_seconds: float) -> dict[str, float]:
    sb = SandboxProcess({"main": "mailup"}, latency=0.0)
    try:
        path = campaign(folder, sb.urls["main"])
        state = folder / "j.db"
        started = time.time()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runner",
                "run",
                str(path),
                "--now",
                "--state",
                str(state),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        memory = TreeMemory(proc.pid)
        first = None
        deadline = time.monotonic() + 3600
        planned_at = None  # sending starts while the plan goes on: wait for both
        follow = Follow(folder / "events.jsonl")
        while proc.poll() is None and time.monotonic() < deadline:
            if first is None:
                first = first_sent(state)
            if planned_at is None and follow.saw(b'"event": "step.planned"'):
                planned_at = time.time()
            if first is not None and planned_at is not None:
                since = time.time() - max(first, planned_at)
                if since > send_seconds:
                    proc.send_signal(signal.SIGINT)
                    break
            time.sleep(0.2)
        _, err = proc.communicate(timeout=300)
        peak = memory.stop()
    finally:
        sb.close()
    if proc.returncode not in (0, 130):
        raise SystemExit(f"run exited {proc.returncode}: {err[-800:]}")
    log = events(folder / "events.jsonl")
    stamp = {e["event"]: e["ts"] for e in reversed(log)}  # the first of each kind
    planned = next(e for e in log if e["event"] == "step.planned")
    step_start = datetime.fromisoformat(str(stamp["step.started"])).timestamp()
    plan_end = datetime.fromisoformat(str(stamp["step.planned"])).timestamp()
    size = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("j.db"))
    import sqlite3

    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        run_id = db.execute("SELECT id FROM runs").fetchone()[0]
    return {
        "run_rss_mb": peak,
        "first_s": (first or float("nan")) - started,
        "plan_rate": float(str(planned["read"])) / max(plan_end - step_start, 1e-9),
        "bytes_per_message": size / max(rows, 1),
        "rows": rows,
        "run_id": run_id,
    }


def command_ms(*args: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "runner", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    took = (time.perf_counter() - t0) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return took


def reads(state: Path, run_id: str) -> dict[str, float]:
    """Each read's own time: the command's, less the same command's ``--help``
    (the interpreter's start and the same imports), best of three each."""
    out = {}
    for name, args in (
        ("history", ("history", "--state", str(state))),
        ("status", ("status", "--state", str(state))),
        ("show", ("show", run_id, "--state", str(state))),
    ):
        base = min(command_ms(name, "--help") for _ in range(3))
        out[name] = max(0.0, min(command_ms(*args) for _ in range(3)) - base)
    sys.path.insert(0, str(ROOT))
    from runner.journal.journal import Journal

    j = Journal(state)
    try:
        t0 = time.perf_counter()
        j.metric_figures()
        out["metrics"] = (time.perf_counter() - t0) * 1000
    finally:
        j.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--send-seconds", type=float, default=10.0)
    args = ap.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
            folder = Path(d)
            t0 = time.perf_counter()
            generate(folder, n)
            print(f"{n:,} recipients generated in {time.perf_counter() - t0:.0f} s")
            wall, _cpu, _one, tree, _summary = measure_preview(folder, None)
            print(
                f"  preview: {n / wall:,.0f} recipients/s, peak PSS {tree:.0f} MB "
                f"(target < {TARGETS['rss_mb']} MB: {tree / TARGETS['rss_mb']:.2f} x)"
            )
            f = run_case(folder, n, args.send_seconds)
            print(
                f"  run: first message after {f['first_s']:.1f} s (target < "
                f"{TARGETS['first_s']} s: {f['first_s'] / TARGETS['first_s']:.2f} x); "
                f"peak PSS {f['run_rss_mb']:.0f} MB "
                f"({f['run_rss_mb'] / TARGETS['rss_mb']:.2f} x)"
            )
            print(
                f"  planning: {f['plan_rate']:,.0f} recipients/s (target >= "
                f"{TARGETS['plan_rate']:,}: "
                f"{f['plan_rate'] / TARGETS['plan_rate']:.2f} x)"
            )
            print(
                f"  journal: {f['bytes_per_message']:.0f} bytes a message over "
                f"{int(f['rows']):,} rows (target <= {TARGETS['bytes_per_message']}: "
                f"{f['bytes_per_message'] / TARGETS['bytes_per_message']:.2f} x)"
            )
            r = reads(folder / "j.db", str(f["run_id"]))
            print(
                "  reads (ms, target < 200): "
                + ", ".join(f"{k} {v:.0f}" for k, v in r.items())
            )


if __name__ == "__main__":
    main()
