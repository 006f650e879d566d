"""The Prometheus exposition (src/roomcast/metrics/prometheus.py)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from roomcast.metrics import Collector, Gauges, RoomSize
from roomcast.metrics.prometheus import BUCKETS, Exposition

DOCUMENTED = {
    "roomcast_connections",
    "roomcast_tenant_connections",
    "roomcast_subscribe_streams",
    "roomcast_rooms",
    "roomcast_alerts_firing",
    "roomcast_broker_up",
    "roomcast_messages_in",
    "roomcast_messages_out",
    "roomcast_slow_consumer_closes",
    "roomcast_rate_limited",
    "roomcast_abuse_closes",
    "roomcast_auth_failures",
    "roomcast_activities",
    "roomcast_grpc_calls",
    "roomcast_publish_deliver_seconds",
    "roomcast_broker_publish_seconds",
    "roomcast_uptime_seconds",
}


def families(text: bytes) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text.decode())}


def test_exposition_parses_and_has_the_documented_names() -> None:
    metrics = Collector("node-1")
    metrics.counters.messages_in = 7
    metrics.record_call("Publish", "OK")
    metrics.record_call("Publish", "PERMISSION_DENIED")
    metrics.record_delivery(0, 2_000_000, 3)  # 2 ms, three times
    gauges = Gauges(
        connections=4,
        connections_by_tenant={"acme": 3, "": 1},
        largest_rooms=[RoomSize("chat.a", "acme", 3)],
    )
    parsed = families(Exposition(metrics, lambda: gauges).render())
    assert set(parsed) >= DOCUMENTED
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(
            Exposition(metrics, lambda: gauges).render().decode()
        )
        for s in family.samples
    }
    node = ("node", "node-1")
    assert samples[("roomcast_messages_in_total", (node,))] == 7
    assert samples[("roomcast_connections", (node,))] == 4
    assert samples[("roomcast_tenant_connections", (node, ("tenant", "acme")))] == 3
    calls = (
        "roomcast_grpc_calls_total",
        (("code", "PERMISSION_DENIED"), ("method", "Publish"), node),
    )
    assert samples[calls] == 1
    bucket = ("roomcast_publish_deliver_seconds_bucket", (("le", "0.0025"), node))
    assert samples[bucket] == 3
    assert samples[("roomcast_publish_deliver_seconds_bucket", (("le", "0.001"), node))] == 0
    assert samples[("roomcast_publish_deliver_seconds_count", (node,))] == 3
    assert "process_cpu_seconds" in parsed  # the standard process collector rides along


def test_histogram_buckets_are_cumulative_and_complete() -> None:
    metrics = Collector("n")
    for seconds in (0.0001, 0.003, 0.04, 0.3, 5.0, 100.0):
        metrics.record_delivery(0, int(seconds * 1e9))
    text = Exposition(metrics, Gauges).render().decode()
    counts = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "roomcast_publish_deliver_seconds_bucket"
    ]
    assert len(counts) == len(BUCKETS) + 1
    assert counts == sorted(counts)
    assert counts[-1] == 6
