"""Sending throughput: the runner beside a bare hand-written sender, same sandbox.

Prints a table (not a test). The sandbox runs in its own process on 127.0.0.1 so
that its work does not share our GIL; client and server still share the cores.

    python bench/throughput.py                 # every case, N=20000
    python bench/throughput.py --n 5000 --cases latency,cpu
    python bench/throughput.py --cases memory --memory-n 200000
    python bench/throughput.py --cases cpu --repeat 3   # a shared, noisy machine

Cases (issue 7): latency (50 ms per request, concurrency 32: ceiling 640 msg/s),
cpu (no added latency: runner / baseline), rate (rate 200/s for 20 s: achieved
rate and worst one-second window, from the sandbox's own record), journal (the
default journal beside the cheapest one the code allows), postgres (the same send
with the journal on a local PostgreSQL, fsync on, beside SQLite), memory (peak
RSS of a 200,000-recipient send).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
CREDS: dict[str, dict[str, Any]] = {
    "mailup": {
        "client_id": "bench-client",
        "client_secret": "bench-client-secret",
        "username": "bench",
        "password": "bench-password",
        "account_id": 1,
        "list_id": 2,
        "list_guid": "bench-guid",
        "list_secret": "bench-list-secret",
        "sender": "BENCH",
    },
    "ogangi": {
        "instance_id": 8,
        "public_key": "bench-public",
        "private_key": "bench-private",
        "sender": "12345",
    },
}


def phones(n: int) -> list[str]:
    # valid Spanish mobile numbers, all distinct
    return [f"+346{10000000 + i:08d}" for i in range(n)]


class SandboxProcess:
    def __init__(self, providers: dict[str, str], latency: float) -> None:
        config = {
            "latency": latency,
            "providers": {
                name: {"type": t, "credentials": CREDS[t]}
                for name, t in providers.items()
            },
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "sandbox_proc.py"), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.root: str = info["root"]
        self.urls: dict[str, dict[str, str]] = info["urls"]

    def calls(self) -> list[dict[str, Any]]:
        return list(requests.get(self.root + "/_sandbox/calls", timeout=30).json())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


# -- the bare baseline: what a user would write instead -------------------------------


def baseline(kind: str, urls: dict[str, str], numbers: list[str], threads: int) -> float:
    """Send one request per number with a thread pool; returns msg/s."""
    local = threading.local()

    def session() -> requests.Session:
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
            s.mount("http://", HTTPAdapter(pool_maxsize=2))
        return s

    creds = CREDS[kind]
    if kind == "mailup":
        url = f"{urls['send_url']}/sms/{creds['account_id']}/{creds['list_id']}"

        def send(to: str) -> bool:
            body = {
                "Content": "Hello from the baseline",
                "ListGuid": creds["list_guid"],
                "ListSecret": creds["list_secret"],
                "Recipient": to,
                "Sender": creds["sender"],
            }
            return session().post(url, json=body, timeout=30).status_code == 200

    else:
        text = base64.urlsafe_b64encode(b"Hello from the baseline").decode()

        def send(to: str) -> bool:
            number = base64.urlsafe_b64encode(to.lstrip("+").encode()).decode()
            params = [str(creds["instance_id"]), "null", creds["sender"], number, text]
            signed = "/".join(params)
            sig = hmac.new(creds["private_key"].encode(), signed.encode(), hashlib.sha256)
            path = "/".join(quote(p, safe="") for p in params)
            tail = f"{path}/{creds['public_key']}/{sig.hexdigest()}"
            url = f"{urls['base_url']}/rest/api/tools/sendSMS/{tail}"
            return session().get(url, timeout=30).status_code == 200

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ok = sum(pool.map(send, numbers))
    elapsed = time.perf_counter() - start
    if ok != len(numbers):
        raise SystemExit(f"baseline: only {ok}/{len(numbers)} accepted")
    return len(numbers) / elapsed


# -- the runner ----------------------------------------------------------------------


def write_campaign(
    tmp: Path,
    kind: str,
    urls: dict[str, str],
    n: int,
    *,
    concurrency: int,
    rate: str | None,
) -> Path:
    csv = tmp / "recipients.csv"
    with csv.open("w") as f:
        f.write("phone,name\n")
        for i, p in enumerate(phones(n)):
            f.write(f"{p},Name{i}\n")
    opts = dict(CREDS[kind])
    lines = [
        "version: 1",
        f"name: bench-{kind}",
        "providers:",
        "  main:",
        f"    type: {kind}",
        f"    concurrency: {concurrency}",
        *([f"    rate: {rate}"] if rate else []),
        "    timeout: {connect: 5s, read: 30s}",
    ]
    for key, url in urls.items():
        lines.append(f"    {key}: {json.dumps(url)}")
    for key, value in opts.items():
        lines.append(f"    {key}: {json.dumps(value)}")
    lines += [
        "recipients: {file: recipients.csv}",
        "templates:",
        '  hello: "Hello {{ name }}, from the runner"',
        "steps:",
        "  - id: blast",
        "    send: {provider: main, template: hello}",
    ]
    path = tmp / "campaign.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_runner(campaign: Path, state: Path | str) -> dict[str, Any]:
    """Run the campaign in this process; returns send-phase figures from the journal."""
    from runner.commands.run import run_file
    from runner.commands.session import Settings
    from runner.engine.context import RunOptions
    from runner.journal.journal import Journal
    from runner.journal.where import locate

    out = io.StringIO()
    t0 = time.perf_counter()
    result = run_file(
        campaign, Settings(state=state), RunOptions(now=True), out=out, env={}
    )
    total = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(f"runner failed:\n{out.getvalue()}")
    j = Journal(locate(str(state)))
    try:
        rows = j.messages_for(result.run_id, "blast", ["sent"])
        step = j.step_status(result.run_id)["blast"]
    finally:
        j.close()
    from datetime import datetime

    first = min(datetime.fromisoformat(r["sent_at"]) for r in rows)
    last = max(datetime.fromisoformat(r["sent_at"]) for r in rows)
    started = datetime.fromisoformat(step["started_at"])
    finished = datetime.fromisoformat(step["finished_at"])
    return {
        "sent": len(rows),
        "total_s": total,
        "step_s": (finished - started).total_seconds(),
        "send_s": (last - first).total_seconds(),
    }


def case_latency(kind: str, n: int) -> list[str]:
    sb = SandboxProcess({"main": kind}, latency=0.05)
    try:
        with tempfile.TemporaryDirectory() as d:
            c = write_campaign(
                Path(d), kind, sb.urls["main"], n, concurrency=32, rate=None
            )
            r = run_runner(c, Path(d) / "j.db")
        base = baseline(kind, sb.urls["main"], phones(min(n, 5000)), 32)
    finally:
        sb.close()
    ceiling = 32 / 0.05
    rate = r["sent"] / r["step_s"]
    return [
        f"latency-bound {kind}: runner {rate:.0f} msg/s = {rate / ceiling:.2f} x ceiling "
        f"{ceiling:.0f} (send phase {r['sent'] / max(r['send_s'], 1e-9):.0f} msg/s); "
        f"bare baseline {base:.0f} msg/s = {base / ceiling:.2f} x ceiling"
    ]


def case_cpu(kind: str, n: int, repeat: int = 1) -> list[str]:
    """The baseline and the runner in turn, ``repeat`` times each: on a shared
    machine one pair can be off by a third either way (another tenant's load),
    so the figure is the best of each beside the median of the pairs' ratios."""
    bases: list[float] = []
    rates: list[float] = []
    for _ in range(repeat):
        sb = SandboxProcess({"main": kind}, latency=0.0)
        try:
            bases.append(baseline(kind, sb.urls["main"], phones(n), 32))
            with tempfile.TemporaryDirectory() as d:
                c = write_campaign(
                    Path(d), kind, sb.urls["main"], n, concurrency=32, rate=None
                )
                r = run_runner(c, Path(d) / "j.db")
        finally:
            sb.close()
        rates.append(r["sent"] / r["step_s"])
    rate, base = max(rates), max(bases)
    line = (
        f"cpu-bound {kind}: runner {rate:.0f} msg/s (whole step, journal on), "
        f"baseline {base:.0f} msg/s -> runner/baseline = {rate / base:.2f}"
    )
    if repeat > 1:
        ratios = sorted(r / b for r, b in zip(rates, bases, strict=True))
        shown = ", ".join(f"{x:.2f}" for x in ratios)
        line += (
            f" (best of {repeat} each; the pairs' ratios {shown}, "
            f"median {statistics.median(ratios):.2f})"
        )
    return [line]


def case_rate(kind: str, seconds: float = 20.0, rate: int = 200) -> list[str]:
    sb = SandboxProcess({"main": kind}, latency=0.0)
    n = int(rate * seconds)
    try:
        with tempfile.TemporaryDirectory() as d:
            c = write_campaign(
                Path(d), kind, sb.urls["main"], n, concurrency=32, rate=f"{rate}/s"
            )
            run_runner(c, Path(d) / "j.db")
        stamps = sorted(
            c["at"]
            for c in sb.calls()
            if c["method"] in ("GET", "POST") and c["status"] == 200
        )
    finally:
        sb.close()
    stamps = stamps[-n:]
    achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    worst, j = 0, 0
    for i, s in enumerate(stamps):
        while stamps[j] <= s - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    return [
        f"rate limit {kind}: configured {rate}/s, achieved {achieved:.1f}/s "
        f"({achieved / rate:.3f} x), worst one-second window {worst} "
        f"({worst / rate:.3f} x)"
    ]


def case_journal(kind: str, n: int) -> list[str]:
    sb = SandboxProcess({"main": kind}, latency=0.0)
    try:
        with tempfile.TemporaryDirectory() as d:
            c = write_campaign(
                Path(d), kind, sb.urls["main"], n, concurrency=32, rate=None
            )
            disk = run_runner(c, Path(d) / "j.db")
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        with tempfile.TemporaryDirectory(dir=shm) as d:
            c = write_campaign(
                Path(d), kind, sb.urls["main"], n, concurrency=32, rate=None
            )
            os.environ["CAMPAIGN_RUNNER_JOURNAL_SYNC"] = "OFF"
            try:
                cheap = run_runner(c, Path(d) / "j.db")
            finally:
                del os.environ["CAMPAIGN_RUNNER_JOURNAL_SYNC"]
    finally:
        sb.close()
    a = disk["sent"] / disk["step_s"]
    b = cheap["sent"] / cheap["step_s"]
    return [
        f"journal cost {kind}: on-disk SQLite (WAL, synchronous=NORMAL) {a:.0f} msg/s, "
        f"cheapest (tmpfs, synchronous=OFF) {b:.0f} msg/s -> {a / b:.2f} x"
    ]


def case_postgres(kind: str, n: int) -> list[str]:
    """The same send with the journal on SQLite (on disk) and on PostgreSQL (a
    local server, fsync on), in this run: msg/s and the journal's share."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pgkit import PostgresServer

    server = PostgresServer(durable=True)
    sb = SandboxProcess({"main": kind}, latency=0.0)
    try:
        with tempfile.TemporaryDirectory() as d:
            c = write_campaign(
                Path(d), kind, sb.urls["main"], n, concurrency=32, rate=None
            )
            lite = run_runner(c, Path(d) / "j.db")
            pg = run_runner(c, server.new_database())
    finally:
        sb.close()
        server.stop()
    a = lite["sent"] / lite["step_s"]
    b = pg["sent"] / pg["step_s"]
    per_a, per_b = 1e6 * lite["step_s"] / lite["sent"], 1e6 * pg["step_s"] / pg["sent"]
    return [
        f"journal on PostgreSQL {kind}: SQLite {a:.0f} msg/s "
        f"({per_a:.0f} us per message, whole step), "
        f"PostgreSQL 15 local, fsync on {b:.0f} msg/s ({per_b:.0f} us) -> "
        f"{b / a:.2f} x SQLite"
    ]


def _peak_rss_mb(proc: subprocess.Popen[str]) -> float:
    """The process's own high-water mark (VmHWM), polled until it exits.

    Not RUSAGE_CHILDREN: that would count the sandbox process too.
    """
    peak = 0.0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            break
        time.sleep(0.2)
    return peak


def case_memory(kind: str, n: int) -> list[str]:
    sb = SandboxProcess({"main": kind}, latency=0.0)
    try:
        with tempfile.TemporaryDirectory() as d:
            c = write_campaign(
                Path(d), kind, sb.urls["main"], n, concurrency=32, rate=None
            )
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runner",
                    "run",
                    str(c),
                    "--now",
                    "--state",
                    str(Path(d) / "j.db"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            peak_mb = _peak_rss_mb(proc)
            out, _ = proc.communicate()
            elapsed = time.perf_counter() - t0
    finally:
        sb.close()
    if proc.returncode != 0:
        raise SystemExit(out)
    return [
        f"memory {kind}: {n} recipients in {elapsed:.0f} s, peak RSS of the runner "
        f"{peak_mb:.0f} MB (target < 250 MB: {peak_mb / 250:.2f} x)"
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--paths", default="ogangi,mailup")
    ap.add_argument("--cases", default="latency,cpu,rate,journal,memory")
    ap.add_argument("--memory-n", type=int, default=200_000)
    ap.add_argument(
        "--repeat", type=int, default=1, help="cpu: runs of each, best figures kept"
    )
    args = ap.parse_args()
    cases = {
        "latency": lambda kind: case_latency(kind, args.n),
        "cpu": lambda kind: case_cpu(kind, args.n, args.repeat),
        "rate": case_rate,
        "journal": lambda kind: case_journal(kind, args.n),
        "postgres": lambda kind: case_postgres(kind, args.n),
        "memory": lambda kind: case_memory(kind, args.memory_n),
    }
    for kind in args.paths.split(","):
        for case in args.cases.split(","):
            if case not in cases:
                raise SystemExit(f"unknown case {case!r}: {', '.join(cases)}")
            for line in cases[case](kind):
                print(line, flush=True)


if __name__ == "__main__":
    main()
