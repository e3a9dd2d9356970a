"""A clock the provider tests move by hand (settling, token and session expiry)."""

from __future__ import annotations


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
