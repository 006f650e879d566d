"""One snapshot for a whole cluster, from the snapshots its nodes last reported.

Pure. Counts and rates add up (connections, messages per second, calls,
totals); latency percentiles take the worst node (a percentile of a
cluster cannot be rebuilt from its nodes' percentiles, and the worst is
what an operator needs to see); host figures are averaged (CPU and memory
percent, load) or added (process memory, descriptors). A room's members are
counted by the node that holds each connection, so largest rooms add up
per room.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CLUSTER", "aggregate"]

CLUSTER = "cluster"
LARGEST_ROOMS = 10


def _sum(payloads: Sequence[Mapping[str, Any]], *path: str) -> float:
    total = 0.0
    for payload in payloads:
        value: Any = payload
        for key in path:
            value = value.get(key, 0) if isinstance(value, Mapping) else 0
        total += value if isinstance(value, int | float) else 0
    return total


def _merge_counts(maps: Sequence[Mapping[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for counts in maps:
        for key, value in counts.items():
            merged[key] = merged.get(key, 0) + value
    return merged


def _worst(payloads: Sequence[Mapping[str, Any]], *path: str) -> dict[str, Any]:
    sections = []
    for payload in payloads:
        value: Any = payload
        for key in path:
            value = value.get(key, {}) if isinstance(value, Mapping) else {}
        sections.append(value)
    return {
        "p50": max((s.get("p50", 0.0) for s in sections), default=0.0),
        "p95": max((s.get("p95", 0.0) for s in sections), default=0.0),
        "p99": max((s.get("p99", 0.0) for s in sections), default=0.0),
        "count": sum(s.get("count", 0) for s in sections),
    }


def aggregate(payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The cluster's snapshot (the ``metrics.snapshot`` shape) from its nodes'.

    Args:
        payloads: each node's latest ``metrics.snapshot`` payload.
    """
    count = max(len(payloads), 1)
    rooms: dict[tuple[str, str], int] = {}
    for payload in payloads:
        for room in payload.get("largest_rooms", []):
            key = (room["name"], room["tenant_id"])
            rooms[key] = rooms.get(key, 0) + room["members"]
    largest = sorted(rooms.items(), key=lambda item: (-item[1], item[0]))[:LARGEST_ROOMS]
    totals = _merge_counts([p.get("totals", {}) for p in payloads])
    return {
        "node_id": CLUSTER,
        "nodes": sorted(p["node_id"] for p in payloads),
        "time": max((p.get("time", 0.0) for p in payloads), default=0.0),
        "uptime_seconds": max((p.get("uptime_seconds", 0.0) for p in payloads), default=0.0),
        "system": {
            "cpu_percent": _sum(payloads, "system", "cpu_percent") / count,
            "memory_percent": _sum(payloads, "system", "memory_percent") / count,
            "load_average": [
                sum(p.get("system", {}).get("load_average", [0, 0, 0])[i] for p in payloads) / count
                for i in range(3)
            ],
            "process_rss_bytes": int(_sum(payloads, "system", "process_rss_bytes")),
            "open_fds": int(_sum(payloads, "system", "open_fds")),
        },
        "connections": int(_sum(payloads, "connections")),
        "connections_by_tenant": {
            tenant: int(n)
            for tenant, n in _merge_counts(
                [p.get("connections_by_tenant", {}) for p in payloads]
            ).items()
        },
        "subscriptions": int(_sum(payloads, "subscriptions")),
        "rooms": int(_sum(payloads, "rooms")),
        "largest_rooms": [
            {"name": name, "tenant_id": tenant, "members": members}
            for (name, tenant), members in largest
        ],
        "messages_in_per_second": _sum(payloads, "messages_in_per_second"),
        "messages_out_per_second": _sum(payloads, "messages_out_per_second"),
        "latency_ms": _worst(payloads, "latency_ms"),
        "grpc": {
            "calls_per_second": _merge_counts(
                [p.get("grpc", {}).get("calls_per_second", {}) for p in payloads]
            ),
            "error_rate": max(
                (p.get("grpc", {}).get("error_rate", 0.0) for p in payloads), default=0.0
            ),
            "subscribe_streams": int(_sum(payloads, "grpc", "subscribe_streams")),
        },
        "broker": {
            "healthy": all(p.get("broker", {}).get("healthy", True) for p in payloads),
            "rtt_ms": max((p.get("broker", {}).get("rtt_ms", 0.0) for p in payloads), default=0.0),
            "publish_ms": _worst(payloads, "broker", "publish_ms"),
        },
        "firing_alerts": int(_sum(payloads, "firing_alerts")),
        "totals": {key: int(value) for key, value in totals.items()},
    }
