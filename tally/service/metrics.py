"""Prometheus metrics: what this service did, and what the ledger says (at each scrape).

Appends through the service are counted as they happen; everything else (fetch failures,
breakers, stale marks, orders, alerts, runs' last cycle, the spool, the verify lag) is read
from the ledger's monitor fold when Prometheus scrapes, so it covers every writer, not only
this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ledger.store import EventStore
    from tally.service.watch import LedgerWatch

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class ServiceMetrics:
    """One registry per app (tests run several apps in one process)."""

    def __init__(self, store: EventStore, watch: LedgerWatch, spool_dir: Path) -> None:
        self.registry = CollectorRegistry()
        self.appended = Counter(
            "tally_events_appended",
            "Events appended through this service, by type",
            ["type"],
            registry=self.registry,
        )
        self.append_seconds = Histogram(
            "tally_append_seconds",
            "Latency of one append request's commit",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.registry.register(LedgerCollector(store, watch, spool_dir))


class LedgerCollector(Collector):
    def __init__(self, store: EventStore, watch: LedgerWatch, spool_dir: Path) -> None:
        self.store, self.watch, self.spool_dir = store, watch, spool_dir

    def collect(self) -> Iterator[Metric]:
        from tally.verification import verified_position
        from tally.views import live_cycle_ages, runs_rows

        state = self.watch.refresh()
        head = self.watch.head
        yield GaugeMetricFamily("tally_ledger_head_position", "The ledger's last position", head)
        failures = CounterMetricFamily(
            "tally_fetch_failures",
            "Failed fetches, by error class and source",
            labels=["class", "source"],
        )
        for (error_class, source), count in sorted(state.errors_by_class_source.items()):
            failures.add_metric([error_class, source], count)
        yield failures
        breakers = GaugeMetricFamily(
            "tally_breaker_state",
            "Breaker state: 0 closed, 1 half-open, 2 open",
            labels=["breaker"],
        )
        for name, view in sorted(state.breakers.breakers.items()):
            breakers.add_metric([name], BREAKER_STATES.get(view.state, 0))
        yield breakers
        yield CounterMetricFamily("tally_stale_marks", "Prices marked stale", state.stale_marks)
        orders = CounterMetricFamily("tally_orders", "Orders by outcome", labels=["outcome"])
        for outcome, count in state.orders.as_dict().items():
            orders.add_metric([outcome], count)
        yield orders
        yield GaugeMetricFamily(
            "tally_alerts_firing", "Alerts raised and not resolved", len(state.alerts_firing)
        )
        spool = (
            sum(f.stat().st_size for f in self.spool_dir.glob("*.spool"))
            if self.spool_dir.is_dir()
            else 0
        )
        yield GaugeMetricFamily("tally_spool_bytes", "Bytes of cycles waiting in spools", spool)
        ages = GaugeMetricFamily(
            "tally_run_last_cycle_age_seconds",
            "Seconds since each running paper or live run's last cycle",
            labels=["run"],
        )
        for run_id, age in live_cycle_ages(state, runs_rows(self.store), datetime.now(UTC)).items():
            if age is not None:
                ages.add_metric([run_id], age)
        yield ages
        yield GaugeMetricFamily(
            "tally_verify_lag_events",
            "Events appended after the last verified position",
            head - verified_position(self.store),
        )
