"""Fault injection for the sandbox: errors, latency, timeouts, broken bodies.

Rates are probabilities per request (0..1), drawn from a seeded generator so a
run can be repeated. Kinds: ``http_<status>`` (e.g. http_500, http_503, http_429),
``timeout`` (no answer: the client's read timeout fires), ``malformed`` (a body
that does not parse), ``truncated`` (the real answer cut in half), and
``wrong_content_type`` (an HTML error page with 200).
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.model.campaign import SandboxOptions
from runner.sandbox.server import Fault, FaultInjector, Request, Response

KINDS = ("timeout", "malformed", "truncated", "wrong_content_type")
_HTTP = re.compile(r"^http_(\d{3})$")


@dataclass
class FaultPlan:
    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    hang: float = 2.0  # how long a "timeout" request is held before the socket closes
    mounts: tuple[str, ...] | None = None  # only these emulators (None: all)

    @classmethod
    def from_options(cls, options: SandboxOptions) -> FaultPlan:
        return cls(dict(options.faults), options.seed)

    @classmethod
    def parse(cls, text: str, seed: int | None = None) -> FaultPlan:
        """``http_503=0.1,timeout=0.02`` (the ``--faults`` option)."""
        rates: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            kind, _, value = part.partition("=")
            kind = kind.strip()
            if kind not in KINDS and not _HTTP.match(kind):
                raise ValueError(
                    f"unknown fault kind {kind!r} (http_NNN, {', '.join(KINDS)})"
                )
            rate = float(value)
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate for {kind} must be between 0 and 1")
            rates[kind] = rate
        if sum(rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        return cls(rates, seed)

    @property
    def active(self) -> bool:
        return any(self.rates.values())

    def injector(self) -> FaultInjector:
        rng = random.Random(self.seed)
        lock = threading.Lock()
        table = sorted(self.rates.items())

        def decide(mount: str, req: Request) -> Fault | None:
            if self.mounts is not None and mount not in self.mounts:
                return None
            with lock:
                x = rng.random()
            for kind, rate in table:
                if x < rate:
                    return _fault(kind, self.hang)
                x -= rate
            return None

        return decide


def _fault(kind: str, hang: float) -> Fault:
    m = _HTTP.match(kind)
    if m:
        status = int(m.group(1))
        headers = {"Retry-After": "1"} if status in (429, 503) else {}
        return Fault(
            response=Response(status, b'{"error":"injected fault"}', headers=headers)
        )
    if kind == "timeout":
        return Fault(drop=True, hang=hang)
    if kind == "malformed":
        return Fault(
            response=Response(200, b"\x00\xff<<not a valid answer", "application/json")
        )
    if kind == "wrong_content_type":
        html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        return Fault(response=Response(200, html, "text/html"))
    if kind == "truncated":
        return Fault(
            mangle=lambda r: Response(
                r.status, r.body[: len(r.body) // 2], r.content_type, r.headers
            )
        )
    raise ValueError(kind)
