"""When to try a provider call again: backoff with full jitter, and a circuit breaker."""

from __future__ import annotations

import random
import threading

from runner.model.campaign import RetryPolicy


class Breaker:
    """Circuit breaker: after ``threshold`` transient failures in a row the provider
    is paused (``cooldown``, doubling); after ``max_opens`` pauses with no success
    between them it is declared down (the step fails over or stops)."""

    def __init__(
        self, threshold: int = 10, cooldown: float = 1.0, max_opens: int = 5
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_opens = max_opens
        self._failures = 0
        self._opens = 0
        self._lock = threading.Lock()

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opens = 0

    def failure(self) -> tuple[float, bool]:
        """Record a transient failure: (pause seconds or 0, provider is down)."""
        with self._lock:
            self._failures += 1
            if self._failures < self.threshold:
                return 0.0, False
            self._failures = 0
            self._opens += 1
            pause = min(self.cooldown * 2 ** (self._opens - 1), 30.0)
            return pause, self._opens >= self.max_opens


def backoff(attempt: int, policy: RetryPolicy, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a provider's Retry-After is honoured."""
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    return delay
