"""Preview throughput: read -> normalise -> dedup -> render -> encode/count.

Prints figures (not a test). Generates a recipients CSV in a temporary folder and
times the real command, the way a user runs it:

    campaign-runner preview FILE --format csv --output /dev/null

    python bench/preview.py                        # 10k, 100k and 1M rows
    python bench/preview.py --sizes 100000 --workers 1

The CSV mixes what real lists hold: international numbers written several ways
(+34612345678, "+34 612 345 678", 0034...), national ones (612 345 678), 1%
invalid, 2% duplicates, 2% opted out (an exclude file), Spanish/English names
with accents; the template has per-language variants and uses the first_name
and date filters. Peak RSS: the command's own process; tree PSS: the command and
its worker processes (PSS shares the pages the forked workers have in common with
it); both sampled every 50 ms.
Target (issue 3): >= 50,000 recipients/s and < 200 MB on this 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

FIRST = ["Ana", "José", "Lucía", "Carlos", "Marta", "Iker", "Noa", "Hugo", "Zoe", "Leo"]
LAST = ["García", "López", "Ortega", "Vidal", "Etxeberria", "Smith", "Núñez", "Ruiz"]

CAMPAIGN = """\
version: 1
name: bench-preview
timezone: Europe/Madrid
default_region: ES
vars:
  code: SPRING24
  ends: "2026-04-30"
providers:
  tatango:
    type: tatango
    email: bench@example.com
    api_key: ${BENCH_UNSET_KEY}
recipients:
  file: recipients.csv
  exclude: [optout.txt]
templates:
  promo:
    by: lang
    default: en
    variants:
      es: >-
        Hola {{ name | first_name }}, usa {{ vars.code }} antes del
        {{ vars.ends | date }}. Baja: STOP
      en: >-
        Hi {{ name | first_name }}, use {{ vars.code }} by
        {{ vars.ends | date('%b %d') }}. STOP to opt out
steps:
  - id: blast
    send:
      provider: tatango
      template: promo
"""


def phone_text(rng: random.Random, n: int) -> str:
    digits = f"6{n:08d}"
    shape = rng.random()
    if shape < 0.55:
        return f"+34{digits}"
    if shape < 0.75:
        return f"+34 {digits[:3]} {digits[3:6]} {digits[6:]}"
    if shape < 0.80:
        return f"0034{digits}"
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}"


def generate(folder: Path, rows: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    numbers = rng.sample(range(10**8), rows)
    with (folder / "recipients.csv").open("w", encoding="utf-8", newline="") as f:
        f.write("phone,name,lang,tier\n")
        for i in range(rows):
            k = rng.random()
            if k < 0.01:
                phone = f"6{rng.randrange(10**4)}"  # too short
            elif k < 0.03 and i:
                phone = f"+346{numbers[rng.randrange(i)]:08d}"  # an earlier number
            else:
                phone = phone_text(rng, numbers[i])
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            lang = "es" if rng.random() < 0.7 else "en"
            f.write(f"{phone},{name},{lang},{rng.choice(('gold', 'silver'))}\n")
    with (folder / "optout.txt").open("w", encoding="utf-8") as f:
        f.write("# replied STOP\n")
        for n in rng.sample(numbers, rows // 50):
            f.write(f"+346{n:08d}\n")
    (folder / "campaign.yaml").write_text(CAMPAIGN, encoding="utf-8")


def measure(folder: Path, workers: str | None) -> tuple[float, float, float, float, str]:
    """Wall and CPU seconds, peak RSS (MB) of one process and of the tree, summary."""
    cmd = [sys.executable, "-m", "runner", "preview", str(folder / "campaign.yaml")]
    cmd += ["--format", "csv", "--output", os.devnull]
    env = dict(os.environ)
    if workers:
        env["CAMPAIGN_RUNNER_WORKERS"] = workers
    peak_tree = peak_one = 0.0
    cpu0 = os.times()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    done = threading.Event()

    def sample() -> None:
        # (getrusage's RUSAGE_CHILDREN is the largest child of the whole
        # session so far: after a larger size, every later row showed its peak)
        nonlocal peak_tree, peak_one
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak_one = max(peak_one, parent.memory_info().rss / 2**20)
                tree = [parent, *parent.children(recursive=True)]
                pss = sum(p.memory_full_info().pss for p in tree) / 2**20
                peak_tree = max(peak_tree, pss)
            except (psutil.Error, AttributeError):
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    cpu1 = os.times()
    cpu = (cpu1.children_user - cpu0.children_user) + (
        cpu1.children_system - cpu0.children_system
    )
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"preview exited {proc.returncode}: {err.decode()[-500:]}")
    summary = next(
        (line for line in out.decode().splitlines() if line.startswith("recipients:")), ""
    )
    return wall, cpu, peak_one, peak_tree, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--workers", help="worker processes (default: one per core)")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f} before the runs")
    print(f"{'rows':>9}  {'seconds':>7}  {'recipients/s':>12}  {'CPU s':>6}  "
          f"{'peak RSS':>8}  {'tree PSS':>8}")  # fmt: skip
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(
            prefix="bench-preview-", dir=os.environ.get("BENCH_TMP")
        ) as tmp:
            folder = Path(tmp)
            generate(folder, size)
            wall, cpu, one, tree, summary = measure(folder, args.workers)
        print(f"{size:>9,}  {wall:>7.2f}  {size / wall:>12,.0f}  {cpu:>6.1f}  "
              f"{one:>6.0f}MB  {tree:>6.0f}MB   {summary}")  # fmt: skip


if __name__ == "__main__":
    main()
