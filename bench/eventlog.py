"""What buffering the per-message event lines buys (issue 13).

Every event is written at once except the per-message ones of a send, which
wait up to 0.25 s. This measures both ways on this disk: 16 threads (a send's
``concurrency``) each emitting ``message.sent`` lines, once with the buffering
and once writing every line as it comes, and prints lines per second and the
ratio. Run: ``python bench/eventlog.py [N]``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from runner.journal import eventlog
from runner.journal.eventlog import EventLog

THREADS = 16


def rate(n: int, buffered: bool) -> float:
    saved = eventlog.BUFFERED
    eventlog.BUFFERED = saved if buffered else frozenset()
    try:
        with tempfile.TemporaryDirectory() as d:
            log = EventLog(Path(d) / "events.jsonl")
            per = n // THREADS

            def work(t: int) -> None:
                for i in range(per):
                    log.emit(
                        "message.sent",
                        "20261202T000000-abcdef",
                        "blast",
                        to=log.phone(f"+3461{t:02d}{i:06d}"),
                        provider="mailup",
                        message_id=str(i),
                        segments=1,
                    )

            threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
            start = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            log.close()
            return per * THREADS / (time.perf_counter() - start)
    finally:
        eventlog.BUFFERED = saved


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rate(n // 10, True)  # warm up
    best = {True: 0.0, False: 0.0}
    for _ in range(3):
        for buffered in (False, True):
            best[buffered] = max(best[buffered], rate(n, buffered))
    print(f"{n} message.sent lines from {THREADS} threads, best of 3")
    print(f"  every line written at once: {best[False]:,.0f} lines/s (baseline)")
    print(
        f"  per-message lines buffered: {best[True]:,.0f} lines/s "
        f"({best[True] / best[False]:.2f} x)"
    )
    print(
        "  at 640 msg/s the log takes "
        f"{640 / best[False] * 100:.1f}% of the send's time unbuffered, "
        f"{640 / best[True] * 100:.1f}% buffered"
    )


if __name__ == "__main__":
    main()
