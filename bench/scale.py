"""Large campaigns: memory, time to first message, planning rate, journal size and
read latency at a million recipients and more (issue 18).

Prints figures beside their targets (not a test). The recipients are the ones
bench/preview.py generates (numbers written several ways, 1% invalid, 2%
duplicates, 2% opted out, two language variants); the provider is MailUp's
emulator in its own process. ``run`` is stopped (SIGINT, as Ctrl-C)
``--send-seconds`` after its first message (its plan goes on while it sends, a
little ahead of the sending: the figures about sending itself are
bench/throughput.py's); the planning figures come from the send step's whole
plan made into a fresh journal the way ``run`` makes it, as fast as it goes, and
the reads are timed on that journal.

    python bench/scale.py                          # 1M
    python bench/scale.py --sizes 1000000,10000000 --send-seconds 10

Figures: peak PSS of the process tree (preview, run and the plan), time from
the send step's start (and from ``run`` starting: loading the campaign and the
recipients file's digest come first) to its first message at the provider,
planning recipients/s (until the step's plan is committed), journal bytes per
message (the database and its WAL
over the message rows), and the time ``history``, ``status``, ``show RUN`` take
(the command's own time, run in the bench's process once imported) and one
``/metrics`` scrape's journal reads.
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
from collections.abc import Callable
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
    return row[0] / 1000 if row and row[0] else None  # integer milliseconds


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
        while proc.poll() is None and time.monotonic() < deadline:
            if first is None:
                first = first_sent(state)
            elif time.time() - first > send_seconds:
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.2)
        _, err = proc.communicate(timeout=300)
        peak = memory.stop()
    finally:
        sb.close()
    if proc.returncode not in (0, 130):
        raise SystemExit(f"run exited {proc.returncode}: {err[-800:]}")
    first = first or float("nan")
    return {
        "run_rss_mb": peak,
        "first_s": first - started,
        "first_after_step_s": first - step_started(folder / "events.jsonl"),
    }


def step_started(log: Path) -> float:
    """When the run's (first) step started, from the head of its event log."""
    with log.open() as f:
        for line in f:
            event = json.loads(line)
            if event["event"] == "step.started":
                return datetime.fromisoformat(event["ts"]).timestamp()
    return float("nan")


def plan_case(folder: Path) -> dict[str, float]:
    """The send step's whole plan into a fresh journal (``plan_only`` in its own
    process): its rate, peak PSS and the journal it leaves, to read."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--plan-only", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    memory = TreeMemory(proc.pid)
    out, err = proc.communicate(timeout=7200)
    peak = memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"planning exited {proc.returncode}: {err[-800:]}")
    figures = json.loads(out)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("plan.db"))
    return {**figures, "plan_rss_mb": peak, "bytes_per_message": size / figures["rows"]}


def plan_only(folder: Path) -> None:
    """What ``run`` does to plan the send step, as fast as it can: ``run``
    itself keeps its plan a little ahead of its sending (runner.engine.ahead),
    so its own pace is the provider's."""
    sys.path.insert(0, str(ROOT))
    from runner.audience.recipient import RecipientStats
    from runner.engine.plan import LeftOutRows, plan, renderings
    from runner.journal.journal import Journal
    from runner.loader.load import load_campaign

    campaign, _ = load_campaign(folder / "scale.yaml", env={})
    journal = Journal(folder / "plan.db")
    try:
        run_id = journal.start_run(campaign.name, str(campaign.path), {})
        left_out = LeftOutRows(journal, run_id, "blast")
        stats = RecipientStats(on_skip=left_out)
        t0 = time.perf_counter()
        result = plan(
            journal,
            run_id,
            "blast",
            "main",
            renderings(campaign, "promo", stats),
            left_out=left_out,
        )
        took = time.perf_counter() - t0
    finally:
        journal.close()
    print(
        json.dumps(
            {"plan_rate": stats.read / took, "rows": result.added, "run_id": run_id}
        )
    )


def reads(state: Path, run_id: str) -> dict[str, float]:
    """Each read's own time: the command run in this process (its imports done
    by a first, untimed call), and one ``/metrics`` scrape's journal reads; the
    best of five each. (Timing whole processes, the interpreter's start and the
    imports jitter by more than the reads take.)"""
    sys.path.insert(0, str(ROOT))
    import contextlib
    import io

    from runner.cli import main as cli
    from runner.journal.journal import Journal

    def timed(call: Callable[[], object]) -> float:
        call()
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            call()
            best = min(best, (time.perf_counter() - t0) * 1000)
        return best

    def command(*args: str) -> Callable[[], object]:
        def call() -> object:
            with contextlib.redirect_stdout(io.StringIO()):
                code = cli([*args, "--state", str(state)])
            if code != 0:
                raise SystemExit(f"{' '.join(args)}: exit {code}")
            return code

        return call

    out = {
        "history": timed(command("history")),
        "status": timed(command("status")),
        "show": timed(command("show", run_id)),
    }
    j = Journal(state)
    try:
        out["metrics"] = timed(j.metric_figures)
    finally:
        j.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--send-seconds", type=float, default=10.0)
    ap.add_argument(
        "--cases",
        default="preview,run,plan",
        help="which to measure (plan: planning, journal size and reads)",
    )
    ap.add_argument("--plan-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plan_only:
        plan_only(args.plan_only)
        return
    cases = set(args.cases.split(","))
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
            folder = Path(d)
            t0 = time.perf_counter()
            generate(folder, n)
            print(f"{n:,} recipients generated in {time.perf_counter() - t0:.0f} s")
            if "preview" in cases:
                show_preview(folder, n)
            if "run" in cases:
                show_run(folder, n, args.send_seconds)
            if "plan" in cases:
                show_plan(folder)


def show_preview(folder: Path, n: int) -> None:
    wall, _cpu, _one, tree, _summary = measure_preview(folder, None)
    print(
        f"  preview: {n / wall:,.0f} recipients/s, peak PSS {tree:.0f} MB "
        f"(target < {TARGETS['rss_mb']} MB: {tree / TARGETS['rss_mb']:.2f} x)"
    )


def show_run(folder: Path, n: int, send_seconds: float) -> None:
    f = run_case(folder, n, send_seconds)
    print(
        f"  run: first message {f['first_after_step_s']:.1f} s after the send step "
        f"started (target < {TARGETS['first_s']} s: "
        f"{f['first_after_step_s'] / TARGETS['first_s']:.2f} x), "
        f"{f['first_s']:.1f} s after run started; "
        f"peak PSS {f['run_rss_mb']:.0f} MB "
        f"({f['run_rss_mb'] / TARGETS['rss_mb']:.2f} x)"
    )


def show_plan(folder: Path) -> None:
    f = plan_case(folder)
    print(
        f"  planning: {f['plan_rate']:,.0f} recipients/s, peak PSS "
        f"{f['plan_rss_mb']:.0f} MB (target >= {TARGETS['plan_rate']:,}: "
        f"{f['plan_rate'] / TARGETS['plan_rate']:.2f} x)"
    )
    print(
        f"  journal: {f['bytes_per_message']:.0f} bytes a message over "
        f"{int(f['rows']):,} rows, as planned: every message queued, so in the "
        "queued index too (bench/journal_size.py: as sent) "
        f"(target <= {TARGETS['bytes_per_message']}: "
        f"{f['bytes_per_message'] / TARGETS['bytes_per_message']:.2f} x)"
    )
    r = reads(folder / "plan.db", str(f["run_id"]))
    shown = ", ".join(f"{k} {v:.0f}" for k, v in r.items())
    print(f"  reads (ms, target < 200): {shown}")


if __name__ == "__main__":
    main()
