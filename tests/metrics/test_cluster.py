"""One snapshot for a cluster from its nodes' snapshots (metrics/cluster.py)."""

from __future__ import annotations

from typing import Any

import pytest

from roomcast.metrics.cluster import CLUSTER, LARGEST_ROOMS, aggregate


def node(node_id: str, **fields: Any) -> dict[str, Any]:
    """A node's ``metrics.snapshot`` payload, with a few figures set."""
    payload: dict[str, Any] = {
        "node_id": node_id,
        "time": 100.0,
        "uptime_seconds": 10.0,
        "system": {
            "cpu_percent": 10.0,
            "memory_percent": 20.0,
            "load_average": [1.0, 2.0, 3.0],
            "process_rss_bytes": 1000,
            "open_fds": 10,
        },
        "connections": 1,
        "connections_by_tenant": {},
        "subscriptions": 0,
        "rooms": 0,
        "largest_rooms": [],
        "messages_in_per_second": 0.0,
        "messages_out_per_second": 0.0,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "count": 10},
        "grpc": {"calls_per_second": {}, "error_rate": 0.0, "subscribe_streams": 0},
        "broker": {
            "healthy": True,
            "rtt_ms": 1.0,
            "publish_ms": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "count": 5},
        },
        "firing_alerts": 0,
        "totals": {},
    }
    payload.update(fields)
    return payload


def test_counts_and_rates_add_up() -> None:
    cluster = aggregate(
        [
            node(
                "b",
                connections=2,
                connections_by_tenant={"acme": 2},
                subscriptions=1,
                rooms=3,
                messages_in_per_second=10.0,
                messages_out_per_second=100.0,
                grpc={
                    "calls_per_second": {"Publish": 5.0},
                    "error_rate": 0.1,
                    "subscribe_streams": 1,
                },
                firing_alerts=1,
                totals={"auth_failures": 2, "activities": 1},
            ),
            node(
                "a",
                connections=3,
                connections_by_tenant={"acme": 1, "globex": 2},
                subscriptions=2,
                rooms=4,
                messages_in_per_second=5.0,
                messages_out_per_second=50.0,
                grpc={
                    "calls_per_second": {"Publish": 1.0, "Subscribe": 2.0},
                    "error_rate": 0.3,
                    "subscribe_streams": 2,
                },
                totals={"auth_failures": 1},
            ),
        ]
    )
    assert cluster["node_id"] == CLUSTER
    assert cluster["nodes"] == ["a", "b"]
    assert cluster["connections"] == 5
    assert cluster["connections_by_tenant"] == {"acme": 3, "globex": 2}
    assert (cluster["subscriptions"], cluster["rooms"]) == (3, 7)
    assert cluster["messages_in_per_second"] == 15.0
    assert cluster["messages_out_per_second"] == 150.0
    assert cluster["grpc"] == {
        "calls_per_second": {"Publish": 6.0, "Subscribe": 2.0},
        "error_rate": 0.3,  # the worst node's
        "subscribe_streams": 3,
    }
    assert cluster["firing_alerts"] == 1
    assert cluster["totals"] == {"auth_failures": 3, "activities": 1}


def test_latency_takes_the_worst_node_and_counts_every_sample() -> None:
    slow = node("slow", latency_ms={"p50": 5.0, "p95": 1.0, "p99": 50.0, "count": 3})
    cluster = aggregate([node("fast"), slow])
    assert cluster["latency_ms"] == {"p50": 5.0, "p95": 2.0, "p99": 50.0, "count": 13}
    assert cluster["broker"]["publish_ms"]["count"] == 10


def test_host_figures_average_or_add() -> None:
    busy = node(
        "busy",
        system={
            "cpu_percent": 90.0,
            "memory_percent": 40.0,
            "load_average": [3.0, 4.0, 5.0],
            "process_rss_bytes": 3000,
            "open_fds": 30,
        },
    )
    system = aggregate([node("idle"), busy])["system"]
    assert system == {
        "cpu_percent": 50.0,
        "memory_percent": 30.0,
        "load_average": [2.0, 3.0, 4.0],
        "process_rss_bytes": 4000,
        "open_fds": 40,
    }


def test_the_broker_is_healthy_only_if_it_is_for_every_node() -> None:
    down = node("down", broker={"healthy": False, "rtt_ms": 2000.0, "publish_ms": {}})
    assert aggregate([node("up"), node("up2")])["broker"]["healthy"] is True
    broker = aggregate([node("up"), down])["broker"]
    assert broker["healthy"] is False
    assert broker["rtt_ms"] == 2000.0


def test_a_rooms_members_add_up_across_nodes() -> None:
    def rooms(*sizes: tuple[str, int]) -> list[dict[str, Any]]:
        return [{"name": name, "tenant_id": "acme", "members": n} for name, n in sizes]

    cluster = aggregate(
        [
            node("a", largest_rooms=rooms(("chat.x", 5), ("chat.y", 4))),
            node("b", largest_rooms=rooms(("chat.y", 3), ("chat.z", 1))),
        ]
    )
    assert cluster["largest_rooms"] == rooms(("chat.y", 7), ("chat.x", 5), ("chat.z", 1))


def test_largest_rooms_keep_the_largest_ten() -> None:
    many = [{"name": f"chat.r{n:02}", "tenant_id": "", "members": n} for n in range(30)]
    largest = aggregate([node("a", largest_rooms=many)])["largest_rooms"]
    assert len(largest) == LARGEST_ROOMS
    assert [room["members"] for room in largest] == list(range(29, 19, -1))


def test_a_node_missing_figures_counts_as_zero() -> None:
    sparse = {"node_id": "old", "connections": 4}
    cluster = aggregate([node("a"), sparse])
    assert cluster["connections"] == 5
    assert cluster["nodes"] == ["a", "old"]
    assert cluster["system"]["cpu_percent"] == pytest.approx(5.0)


def test_one_node_is_its_own_cluster() -> None:
    cluster = aggregate([node("a", connections=7)])
    assert (cluster["nodes"], cluster["connections"]) == (["a"], 7)
