"""``/metrics``: the node's figures in the Prometheus text format.

The hot path keeps its own plain counters (see ``collector``); this module
reads them only when Prometheus scrapes, through a custom collector, so
scraping costs nothing between scrapes and recording never takes a lock.
Names follow the Prometheus conventions: a ``roomcast_`` prefix, base units
(seconds, bytes), ``_total`` on counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector as PrometheusCollector

from .collector import Collector, Gauges
from .histogram import BOUNDS, LatencyHistogram

__all__ = ["BUCKETS", "CONTENT_TYPE", "Exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Histogram buckets (seconds) exported from the finer internal histogram.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    """Cumulative counts at the exported bounds (an internal bucket counts
    at the first exported bound at or above its upper bound)."""
    counts = [0] * (len(BUCKETS) + 1)
    exported = 0
    for index, n in enumerate(histogram.counts):
        upper = BOUNDS[index] if index < len(BOUNDS) else float("inf")
        while exported < len(BUCKETS) and BUCKETS[exported] < upper:
            exported += 1
        counts[exported] += n
    cumulative, running = [], 0
    for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
        running += n
        cumulative.append((bound, float(running)))
    return cumulative


class _Families(PrometheusCollector):
    def __init__(self, metrics: Collector, gauges: Callable[[], Gauges]) -> None:
        self.metrics = metrics
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        metrics, counters, gauges = self.metrics, self.metrics.counters, self.gauges()
        node = metrics.node_id

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"roomcast_{name}", text, labels=["node"])
            family.add_metric([node], value)
            return family

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"roomcast_{name}", text, labels=["node"])
            family.add_metric([node], value)
            return family

        yield gauge("connections", "Open WebSocket connections.", gauges.connections)
        by_tenant = GaugeMetricFamily(
            "roomcast_tenant_connections",
            "Open WebSocket connections per tenant (empty: platform principals).",
            labels=["node", "tenant"],
        )
        for tenant, count in sorted(gauges.connections_by_tenant.items()):
            by_tenant.add_metric([node, tenant], count)
        yield by_tenant
        yield gauge("subscribe_streams", "Open gRPC Subscribe streams.", gauges.subscriptions)
        yield gauge("rooms", "Rooms with members or subscribers.", gauges.rooms)
        yield gauge("alerts_firing", "Alerts firing now.", gauges.firing_alerts)
        yield gauge("broker_up", "1 when the broker is reachable.", float(gauges.broker_healthy))
        for name, text, value in (
            ("messages_in", "Events accepted.", counters.messages_in),
            ("messages_out", "Events delivered to connections and streams.", counters.messages_out),
            (
                "slow_consumer_closes",
                "Connections and streams cut off for falling behind.",
                counters.slow_consumers,
            ),
            ("rate_limited", "Frames refused by a rate limit.", counters.rate_limited),
            ("abuse_closes", "Connections closed for sustained abuse.", counters.abuse_closes),
            ("auth_failures", "Failed authentications.", counters.auth_failures),
            ("activities", "Activity reports (TrackActivity).", counters.activities),
            ("internal_errors", "Unexpected server errors.", counters.internal_errors),
            (
                "overloaded",
                "Reads and connections refused over the memory budget.",
                counters.overloaded,
            ),
        ):
            yield counter(name, text, value)
        calls = CounterMetricFamily(
            "roomcast_grpc_calls",
            "gRPC calls by method and status.",
            labels=["node", "method", "code"],
        )
        for (method, code), count in sorted(metrics.calls.items()):
            calls.add_metric([node, method, code], count)
        yield calls
        for name, text, total, interval in (
            (
                "publish_deliver_seconds",
                "Time from accepting an event to writing it to a recipient.",
                metrics.latency_total,
                metrics.latency,
            ),
            (
                "broker_publish_seconds",
                "Time the broker took to accept a publish.",
                metrics.broker_publish_total,
                metrics.broker_publish,
            ),
        ):
            merged = LatencyHistogram()
            merged.merge(total)
            merged.merge(interval)
            family = HistogramMetricFamily(f"roomcast_{name}", text, labels=["node"])
            family.add_metric([node], _buckets(merged), sum_value=merged.total)
            yield family
        yield gauge(
            "uptime_seconds", "Seconds since the node started.", time.time() - metrics.started
        )


class Exposition:
    """The text ``/metrics`` answers with.

    Args:
        metrics: the node's collector.
        gauges: gathers the node's current gauges.
    """

    def __init__(self, metrics: Collector, gauges: Callable[[], Gauges]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Families(metrics, gauges))
        # The standard process figures (process_cpu_seconds_total, ...).

        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR):
            self.registry.register(_Borrowed(standard))

    def render(self) -> bytes:
        """The exposition, in the Prometheus text format."""
        return generate_latest(self.registry)


class _Borrowed(PrometheusCollector):
    """A collector of the default registry, also collected by ours."""

    def __init__(self, collector: PrometheusCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        yield from self.collector.collect()
