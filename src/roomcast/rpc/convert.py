"""Translations between the node's values and protobuf messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ..brokers import Published
from ..errors import RoomcastError
from ..history import Position
from ..metrics import Alert, Severity
from ..operations import RoomSummary
from ..presence import Member
from ..v1 import admin_pb2, event_pb2, realtime_pb2

__all__ = [
    "alert_to_pb",
    "batch_response",
    "member_to_pb",
    "metrics_to_pb",
    "position_from_pb",
    "position_to_pb",
    "published_to_pb",
    "room_to_pb",
    "timestamp",
]


def timestamp(seconds: float) -> Timestamp:
    """A Timestamp for ``seconds`` since the epoch."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def position_from_pb(position: event_pb2.StreamPosition) -> Position:
    """A core position from its message."""
    return Position(position.offset, position.epoch)


def position_to_pb(position: Position) -> event_pb2.StreamPosition:
    """The message for a core position."""
    return event_pb2.StreamPosition(offset=position.offset, epoch=position.epoch)


def published_to_pb(result: Published) -> realtime_pb2.PublishResponse:
    """The response for a publish result."""
    return realtime_pb2.PublishResponse(
        offset=result.offset, epoch=result.epoch, id=result.id, duplicate=result.duplicate
    )


def batch_response(
    outcomes: Sequence[Published | RoomcastError],
) -> realtime_pb2.PublishBatchResponse:
    """The PublishBatch response for a batch's outcomes, in order.

    Built from plain values in one constructor call: filling in a message
    per item through the protobuf API costs more than publishing the item.
    """
    results: list[Any] = [
        {"error": {"code": outcome.status.name, "message": outcome.message}}
        if isinstance(outcome, RoomcastError)
        else {
            "published": {
                "offset": outcome.offset,
                "epoch": outcome.epoch,
                "id": outcome.id,
                "duplicate": outcome.duplicate,
            }
        }
        for outcome in outcomes
    ]
    # The constructor takes dicts for message fields; the stubs know only messages.
    return realtime_pb2.PublishBatchResponse(results=results)


def alert_to_pb(alert: Alert, node_id: str) -> admin_pb2.Alert:
    """An alert as GetAlerts shows it."""
    message = admin_pb2.Alert(
        id=alert.id,
        rule=alert.rule,
        severity=_SEVERITY[alert.severity],
        state=admin_pb2.ALERT_STATE_FIRING if alert.firing else admin_pb2.ALERT_STATE_RESOLVED,
        value=alert.value,
        threshold=alert.threshold,
        started_at=timestamp(alert.started_at),
        tenant_id=alert.tenant_id,
        message=alert.message,
        node_id=node_id,
    )
    if alert.resolved_at is not None:
        message.resolved_at.CopyFrom(timestamp(alert.resolved_at))
    return message


_SEVERITY = {
    Severity.WARNING: admin_pb2.ALERT_SEVERITY_WARNING,
    Severity.CRITICAL: admin_pb2.ALERT_SEVERITY_CRITICAL,
}


def member_to_pb(member: Member) -> admin_pb2.PresenceEntry:
    """A presence entry."""
    return admin_pb2.PresenceEntry(
        user_id=member.user_id,
        tenant_id=member.tenant or "",
        connection_id=member.connection_id,
        joined_at=timestamp(member.joined_at),
    )


def room_to_pb(summary: RoomSummary) -> admin_pb2.RoomInfo:
    """A ListRooms entry."""
    return admin_pb2.RoomInfo(
        name=summary.room.name,
        tenant_id=summary.room.tenant or "",
        members=summary.members,
        subscribers=summary.subscribers,
        position=position_to_pb(summary.position),
        history_size=summary.history_size,
    )


def _percentiles(section: Mapping[str, Any]) -> realtime_pb2.LatencyPercentiles:
    return realtime_pb2.LatencyPercentiles(
        p50_ms=section.get("p50", 0.0),
        p95_ms=section.get("p95", 0.0),
        p99_ms=section.get("p99", 0.0),
        count=int(section.get("count", 0)),
    )


def metrics_to_pb(payload: Mapping[str, Any]) -> realtime_pb2.GetMetricsResponse:
    """The GetMetrics response for a ``metrics.snapshot`` payload (a node's or a cluster's)."""
    system, grpc_section = payload["system"], payload["grpc"]
    broker, totals = payload["broker"], payload["totals"]
    load = system["load_average"]
    return realtime_pb2.GetMetricsResponse(
        time=timestamp(payload["time"]),
        node_id=payload["node_id"],
        uptime_seconds=payload["uptime_seconds"],
        system=realtime_pb2.SystemMetrics(
            cpu_percent=system["cpu_percent"],
            memory_percent=system["memory_percent"],
            load_average_1m=load[0],
            load_average_5m=load[1],
            load_average_15m=load[2],
            process_rss_bytes=int(system["process_rss_bytes"]),
            open_fds=int(system["open_fds"]),
        ),
        connections=int(payload["connections"]),
        subscriptions=int(payload["subscriptions"]),
        rooms=int(payload["rooms"]),
        messages_in_per_second=payload["messages_in_per_second"],
        messages_out_per_second=payload["messages_out_per_second"],
        publish_to_deliver=_percentiles(payload["latency_ms"]),
        connections_by_tenant={k: int(v) for k, v in payload["connections_by_tenant"].items()},
        grpc_calls_per_second=dict(grpc_section["calls_per_second"]),
        grpc_error_rate=grpc_section["error_rate"],
        broker_publish=_percentiles(broker["publish_ms"]),
        slow_consumer_closes=int(totals.get("slow_consumers", 0)),
        rate_limited=int(totals.get("rate_limited", 0)),
        abuse_closes=int(totals.get("abuse_closes", 0)),
        largest_rooms=[
            realtime_pb2.RoomSize(name=r["name"], tenant_id=r["tenant_id"], members=r["members"])
            for r in payload["largest_rooms"]
        ],
        firing_alerts=int(payload["firing_alerts"]),
        broker_rtt_ms=broker["rtt_ms"],
        auth_failures=int(totals.get("auth_failures", 0)),
        activities=int(totals.get("activities", 0)),
        nodes=payload.get("nodes", [payload["node_id"]]),
    )
