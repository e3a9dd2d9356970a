"""``/metrics``: the Prometheus figures of the journal and of the daemon.

Message, retry and step-duration figures are computed from the journal at
scrape time by a custom collector, so ``/metrics`` always agrees with
``history``/``show`` and survives restarts; the daemon's live state (active
runs, next fire times) comes from a snapshot callback. A private
``CollectorRegistry`` keeps the process and platform collectors of the global
registry out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from runner.daemon.health import Health
from runner.journal.journal import Journal

# seconds; a step is anything from a credit check (< 1 s) to a day-long send
STEP_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


class JournalCollector:
    """Figures read from the journal at every scrape, plus the live snapshot."""

    def __init__(self, journal: Journal, health: Callable[[], Health]) -> None:
        self.journal = journal
        self.health = health

    def collect(self) -> Iterator[Metric]:
        by_outcome = GaugeMetricFamily(
            "campaign_runner_messages",
            "Messages in the journal by campaign, provider and outcome "
            "(queued, pending, sent, failed, unknown) and run mode "
            "(real, or sandbox for a rehearsal).",
            labels=["campaign", "provider", "outcome", "mode"],
        )
        retries = CounterMetricFamily(
            "campaign_runner_retries",
            "Provider calls retried (attempts beyond the first) by campaign and "
            "provider, from the journal.",
            labels=["campaign", "provider"],
        )
        figures = self.journal.metric_figures()
        for (campaign, provider, status, mode), n in figures.messages.items():
            by_outcome.add_metric([campaign, provider, status, mode], float(n))
        for (campaign, provider), n in figures.retries.items():
            retries.add_metric([campaign, provider], float(n))
        spans = figures.step_spans
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
