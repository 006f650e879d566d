"""Translations between the node's values and protobuf messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ..brokers import Outcome, Published, PublishedRun
from ..history import Position
from ..metrics import Alert, Severity
from ..operations import RoomSummary
from ..presence import Member
from ..v1 import admin_pb2, event_pb2, realtime_pb2
from ..wire import ONE_BYTE, field_string, field_varint, len_tag, varint, varint_tag

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


# PublishBatchResponse's fields (realtime.proto), framed by hand in batch_response.
_RESULTS = len_tag(1)  # PublishBatchResponse.results
_PUBLISHED = len_tag(1)  # PublishBatchResult.published
_ERROR = len_tag(2)  # PublishBatchResult.error
_OFFSET = varint_tag(1)  # PublishResponse.offset
_ID = len_tag(3)  # PublishResponse.id
_DUPLICATE = field_varint(4, 1)  # PublishResponse.duplicate = true


def batch_response(outcomes: Sequence[Outcome]) -> bytes:
    """The encoded PublishBatch response for a batch's outcomes, in order.

    Framed by hand (see :mod:`roomcast.wire`) into exactly what the protobuf
    library would encode: a batch's events mostly come back as runs of
    consecutive offsets in one epoch, and those cost a few operations an
    event this way, where building a message per event costs more than
    publishing it.
    """
    parts: list[bytes] = []
    for outcome in outcomes:
        if isinstance(outcome, PublishedRun):
            parts += _run_results(outcome)
        elif isinstance(outcome, Published):
            published = _published(outcome.offset, outcome.epoch, outcome.id, outcome.duplicate)
            parts.append(_result(_PUBLISHED, published))
        else:
            message = outcome.message
            error = field_string(1, outcome.status) + (field_string(2, message) if message else b"")
            parts.append(_result(_ERROR, error))
    return b"".join(parts)


def _published(offset: int, epoch: str, event_id: str, duplicate: bool) -> bytes:
    """A PublishResponse (fields at their defaults are left out, as protobuf does)."""
    return b"".join(
        (
            _OFFSET + varint(offset) if offset else b"",
            field_string(2, epoch) if epoch else b"",
            field_string(3, event_id) if event_id else b"",
            _DUPLICATE if duplicate else b"",
        )
    )


def _result(tag: bytes, message: bytes) -> bytes:
    """One ``results`` entry holding ``message`` as the oneof field ``tag``."""
    result = tag + varint(len(message)) + message
    return _RESULTS + varint(len(result)) + result


def _run_results(run: PublishedRun) -> list[bytes]:
    """The ``results`` entries of a run, one per event."""
    epoch = field_string(2, run.epoch) if run.epoch else b""
    # A PublishResponse of the run: offset (tag, varint), epoch, id (tag, length, id).
    fixed = 1 + len(epoch) + 2
    results: list[bytes] = []
    append = results.append
    offset = run.first_offset  # at least 1: runs are of stored events
    for event_id in run.ids:
        id_bytes = event_id.encode()
        offset_bytes = varint(offset)
        size = fixed + len(offset_bytes) + len(id_bytes)
        if size < 0x7E and id_bytes:  # every length fits a byte (roomcast's own ids do)
            append(
                b"".join(
                    (
                        _RESULTS,
                        ONE_BYTE[size + 2],
                        _PUBLISHED,
                        ONE_BYTE[size],
                        _OFFSET,
                        offset_bytes,
                        epoch,
                        _ID,
                        ONE_BYTE[len(id_bytes)],
                        id_bytes,
                    )
                )
            )
        else:
            append(_result(_PUBLISHED, _published(offset, run.epoch, event_id, False)))
        offset += 1
    return results


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
