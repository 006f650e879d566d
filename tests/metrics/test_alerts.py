"""The alert state machine (src/roomcast/metrics/alerts.py): fire once, resolve once."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from roomcast.metrics import Alerts, Gauges, Snapshot, SystemSample, Thresholds, default_rules
from roomcast.metrics.collector import Counters


def snapshot(
    cpu: float = 10.0,
    memory: float = 10.0,
    p99: float = 0.001,
    errors: float = 0.0,
    calls: int = 100,
    broker: bool = True,
    connections: int = 0,
    tenants: dict[str, int] | None = None,
) -> Snapshot:
    return Snapshot(
        time=0.0,
        node_id="n",
        uptime_seconds=1.0,
        system=SystemSample(cpu, memory, (0.0, 0.0, 0.0), 0, 0),
        gauges=Gauges(
            connections=connections,
            connections_by_tenant=tenants or {},
            broker_healthy=broker,
        ),
        messages_in_per_second=0.0,
        messages_out_per_second=0.0,
        grpc_calls_per_second={},
        grpc_error_rate=errors,
        grpc_calls=calls,
        latency_p50=p99,
        latency_p95=p99,
        latency_p99=p99,
        latency_count=10,
        broker_publish_p50=0.0,
        broker_publish_p95=0.0,
        broker_publish_p99=0.0,
        broker_publish_count=0,
        totals=Counters(),
    )


def engine(**thresholds: float) -> Alerts:
    return Alerts(default_rules(replace(Thresholds(), **thresholds)))  # type: ignore[arg-type]


def test_cpu_fires_after_three_samples_once_and_resolves_once() -> None:
    alerts = engine()
    changes = [alerts.evaluate(snapshot(cpu=cpu), t) for t, cpu in enumerate([90, 90, 90, 95, 99])]
    fired = [a for batch in changes for a in batch]
    assert [(a.rule, a.firing) for a in fired] == [("cpu_high", True)]
    assert fired[0].started_at == 2
    assert [a.rule for a in alerts.firing()] == ["cpu_high"]
    resolved = [a for t in range(5, 10) for a in alerts.evaluate(snapshot(cpu=10), t)]
    assert [(a.rule, a.firing, a.resolved_at) for a in resolved] == [("cpu_high", False, 7)]
    assert alerts.firing() == []
    assert [a.firing for a in alerts.recent()] == [False]


def test_a_value_hovering_at_the_threshold_does_not_flap() -> None:
    alerts = engine(memory_percent=90.0)
    values = [91, 89.9, 91, 89.5, 90.5, 88, 91]  # never below 90 * 0.95 = 85.5
    changes = [a for t, v in enumerate(values) for a in alerts.evaluate(snapshot(memory=v), t)]
    assert [(a.rule, a.firing) for a in changes] == [("memory_high", True)]


@given(st.lists(st.floats(min_value=0, max_value=100), max_size=60))
def test_fired_and_resolved_alternate(values: list[float]) -> None:
    alerts = engine()
    states = [
        a.firing
        for t, v in enumerate(values)
        for a in alerts.evaluate(snapshot(cpu=v, memory=v), t)
        if a.rule == "cpu_high"
    ]
    assert all(a != b for a, b in itertools.pairwise(states))
    assert not states or states[0] is True


def test_each_rule_fires_on_its_own_metric() -> None:
    alerts = engine(max_connections=100, tenant_connections=5)
    fired = alerts.evaluate(
        snapshot(
            memory=95,
            p99=0.5,
            errors=0.2,
            broker=False,
            connections=101,
            tenants={"acme": 6, "globex": 1},
        ),
        0.0,
    )
    assert {(a.rule, a.tenant_id) for a in fired} == {
        ("memory_high", ""),
        ("latency_p99_high", ""),
        ("error_rate_high", ""),
        ("broker_unreachable", ""),
        ("connections_high", ""),
        ("tenant_connections_high", "acme"),
    }
    tenant = next(a for a in fired if a.tenant_id)
    assert "tenant acme has 6 connections" in tenant.message


def test_error_rate_needs_enough_calls_to_judge() -> None:
    alerts = engine()
    assert alerts.evaluate(snapshot(errors=1.0, calls=3), 0.0) == []


def test_a_tenant_that_vanishes_resolves() -> None:
    alerts = engine(tenant_connections=5)
    assert alerts.evaluate(snapshot(tenants={"acme": 9}), 0.0)
    resolved = alerts.evaluate(snapshot(tenants={}), 1.0)
    assert [(a.rule, a.firing) for a in resolved] == [("tenant_connections_high", False)]


def test_rules_at_zero_are_off() -> None:
    rules = {rule.name for rule in default_rules(Thresholds())}
    assert "connections_high" not in rules
    assert "tenant_connections_high" not in rules


def test_clear_keeps_firing_alerts_unless_asked() -> None:
    alerts = engine()
    alerts.evaluate(snapshot(memory=99), 0.0)
    alerts.evaluate(snapshot(memory=10), 1.0)  # resolved: in the log
    alerts.evaluate(snapshot(memory=99), 2.0)  # firing again
    assert len(alerts.recent()) == 2
    assert alerts.clear() == 1
    assert [a.firing for a in alerts.recent()] == [True]
    assert alerts.clear(include_firing=True) == 1
    assert alerts.recent() == []
    assert alerts.firing() == []
    assert alerts.evaluate(snapshot(memory=99), 3.0)  # fires again: the condition holds
