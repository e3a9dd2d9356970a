from __future__ import annotations

import itertools
import threading

from runner.engine.ratelimit import RateLimiter
from runner.model.timeparse import Rate


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def sleep(self, d: float) -> None:
        with self.lock:
            self.t += d


def test_calls_are_spaced_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Rate(200, 1), clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(1000):
        limiter.acquire()
        stamps.append(clock())
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(stamps)}
    assert gaps == {0.005}
    # no one-second window holds more than the rate
    assert max(sum(1 for s in stamps if w <= s < w + 1 - 1e-9) for w in stamps) <= 200


def test_pause_pushes_every_caller_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(Rate(10, 1), clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.pause(5.0)
    limiter.acquire()
    assert clock() >= 105.0


def test_no_rate_means_no_wait_and_stop_is_seen() -> None:
    limiter = RateLimiter(None)
    stop = threading.Event()
    assert limiter.acquire(stop)
    stop.set()
    assert not limiter.acquire(stop)
