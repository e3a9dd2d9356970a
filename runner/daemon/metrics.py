"""The daemon's observability: its log lines, ``/healthz`` and ``/metrics``.

Logs: the event log's lines echoed for people (text on stderr) or for log
shippers (JSON on stdout), through one redactor that knows every run's secrets.
Metrics: message, retry and step-duration figures are computed from the journal
at scrape time by a custom collector, so ``/metrics`` always agrees with
``history``/``show`` and survives restarts; the daemon's live state (active runs,
next fire times) comes from a snapshot callback. A private ``CollectorRegistry``
keeps the process and platform collectors of the global registry out.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from runner.errors import UsageError
from runner.journal.eventlog import Event
from runner.journal.journal import Journal
from runner.journal.tables import messages, steps
from runner.model.secrets import Redactor

log = logging.getLogger(__name__)

# seconds; a step is anything from a credit check (< 1 s) to a day-long send
STEP_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


# -- logs -------------------------------------------------------------------------------

QUIET_ON_TERMINAL = frozenset({"message.sent"})  # a summary follows in step.finished
SHOWN_ABOVE = frozenset({"problems"})  # printed as `validate` lines just before


class LogEcho:
    """An event log listener: every event for people (text) or log shippers (JSON),
    line-flushed."""

    def __init__(self, stream: TextIO, human: bool) -> None:
        self.stream = stream
        self.human = human
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        text = human_line(event.line) if self.human else event.line + "\n"
        if text:
            with self._lock:
                self.stream.write(text)
                self.stream.flush()


def human_line(line: str) -> str:
    """One JSON event -> ``2026-11-23 08:00:01 run.started run=... campaign=...``."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    event = record.pop("event", "?")
    if event in QUIET_ON_TERMINAL:
        return ""
    ts = str(record.pop("ts", ""))[:19].replace("T", " ")
    parts = [ts, event]
    for key, value in record.items():
        if key in SHOWN_ABOVE:
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts) + "\n"


class _OneLine(logging.Filter):
    """A logged exception becomes one line: tracebacks go to crash logs, not screens."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_scheduler_logs() -> None:
    """APScheduler's own logs: errors only, one line each.

    Misses are reported as ``schedule.misfired`` events instead of its warnings.
    """
    top = logging.getLogger("apscheduler")
    if top.getEffectiveLevel() >= logging.WARNING:
        top.setLevel(logging.ERROR)
    for name in ("scheduler", "executors.default", "jobstores.default"):
        logging.getLogger(f"apscheduler.{name}").addFilter(_OneLine())


class SharedRedactor(Redactor):
    """Every run's redactor: the daemon's one event log hides all their secrets."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: tuple[Redactor, ...] = ()

    def include(self, redactor: Redactor) -> None:
        self._parts = (*self._parts, redactor)

    def __call__(self, text: str) -> str:
        for part in self._parts:
            text = part(text)
        return text


# -- metrics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """The daemon's live state, as ``/healthz`` and the gauges report it."""

    scheduler_running: bool
    stopping: bool = False
    campaigns: int = 0  # campaign files scheduled
    active_runs: tuple[str, ...] = ()  # campaign names with a run in progress
    next_fire: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # (campaign name, file) -> unix seconds

    @property
    def ok(self) -> bool:
        return self.scheduler_running and not self.stopping

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "scheduler": "running" if self.scheduler_running else "stopped",
            "stopping": self.stopping,
            "campaigns": self.campaigns,
            "active_runs": len(self.active_runs),
            "running": sorted(self.active_runs),
        }


class JournalCollector:
    """Figures read from the journal at every scrape, plus the live snapshot."""

    def __init__(self, journal: Journal, health: Callable[[], Health]) -> None:
        self.journal = journal
        self.health = health

    def collect(self) -> Iterator[Metric]:
        by_outcome = GaugeMetricFamily(
            "campaign_runner_messages",
            "Messages in the journal by provider and outcome "
            "(queued, pending, sent, failed, unknown).",
            labels=["provider", "outcome"],
        )
        retries = CounterMetricFamily(
            "campaign_runner_retries",
            "Provider calls retried (attempts beyond the first), from the journal.",
            labels=["provider"],
        )
        with self.journal.connect() as conn:
            rows = conn.execute(
                sa.select(messages.c.provider, messages.c.status, sa.func.count())
                .group_by(messages.c.provider, messages.c.status)
                .order_by(messages.c.provider, messages.c.status)
            )
            for provider, status, n in rows:
                by_outcome.add_metric([provider, status], float(n))
            extra = sa.func.sum(
                sa.case((messages.c.attempts > 1, messages.c.attempts - 1), else_=0)
            )
            for provider, n in conn.execute(
                sa.select(messages.c.provider, extra)
                .group_by(messages.c.provider)
                .order_by(messages.c.provider)
            ):
                retries.add_metric([provider], float(n or 0))
            spans = list(
                conn.execute(
                    sa.select(
                        steps.c.kind, steps.c.started_at, steps.c.finished_at
                    ).where(
                        steps.c.started_at.is_not(None), steps.c.finished_at.is_not(None)
                    )
                )
            )
        yield by_outcome
        yield retries
        yield step_histogram(spans)
        state = self.health()
        yield GaugeMetricFamily(
            "campaign_runner_active_runs",
            "Campaign runs in progress.",
            len(state.active_runs),
        )
        yield GaugeMetricFamily(
            "campaign_runner_scheduler_up",
            "1 while the daemon's scheduler is running and not stopping.",
            1.0 if state.ok else 0.0,
        )
        fire = GaugeMetricFamily(
            "campaign_runner_next_fire_time_seconds",
            "When each scheduled campaign runs next (unix seconds).",
            labels=["campaign", "file"],
        )
        for (name, path), when in sorted(state.next_fire.items()):
            fire.add_metric([name, path], when)
        yield fire


def step_histogram(spans: list[Any]) -> HistogramMetricFamily:
    """Step durations by kind from (kind, started_at, finished_at) journal rows."""
    per_kind: dict[str, list[float]] = {}
    for kind, started, finished in spans:
        try:
            seconds = (
                datetime.fromisoformat(finished) - datetime.fromisoformat(started)
            ).total_seconds()
        except (TypeError, ValueError):
            continue
        per_kind.setdefault(kind or "unknown", []).append(max(0.0, seconds))
    hist = HistogramMetricFamily(
        "campaign_runner_step_duration_seconds",
        "How long finished steps took, from their start and finish in the journal.",
        labels=["kind"],
    )
    for kind, values in sorted(per_kind.items()):
        buckets: list[tuple[str, float]] = [
            (f"{b:g}", float(sum(1 for v in values if v <= b))) for b in STEP_BUCKETS
        ]
        buckets.append(("+Inf", float(len(values))))
        hist.add_metric([kind], buckets, sum(values))
    return hist


def build_registry(journal: Journal, health: Callable[[], Health]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JournalCollector(journal, health))
    return registry


def parse_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:9464`` or ``[::1]:9464`` -> (host, port); UsageError otherwise."""
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port_text)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                state = self.server.health()
                body = json.dumps(state.as_dict()).encode()
                self._reply(200 if state.ok else 503, "application/json", body)
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, content_type, encoder(self.server.registry))
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found\n")
        except Exception:  # a scrape must never take the daemon down
            log.exception("http: %s failed", path)
            self._reply(500, "text/plain; charset=utf-8", b"internal error\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    health: Callable[[], Health]


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/healthz`` and ``/metrics`` on exactly the address given, in a thread."""

    def __init__(
        self,
        address: str,
        journal: Journal,
        health: Callable[[], Health],
    ) -> None:
        host, port = parse_address(address)
        server_cls = _Server6 if ":" in host else _Server
        try:
            self._server = server_cls((host, port), _Handler)
        except OSError as e:
            raise UsageError(f"--http {address}: cannot listen: {e.strerror}") from e
        self._server.registry = build_registry(journal, health)
        self._server.health = health
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def url(self) -> str:
        address, port = self._server.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else str(address)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
