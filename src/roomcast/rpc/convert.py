"""Translations between the node's values and protobuf messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ..brokers import Published
from ..errors import RoomcastError
from ..history import Position
from ..metrics import Snapshot
from ..node import RoomSummary
from ..presence import Member
from ..v1 import admin_pb2, event_pb2, realtime_pb2

__all__ = [
    "batch_response",
    "member_to_pb",
    "position_from_pb",
    "position_to_pb",
    "published_to_pb",
    "room_to_pb",
    "snapshot_to_pb",
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


def snapshot_to_pb(snapshot: Snapshot) -> realtime_pb2.GetMetricsResponse:
    """The GetMetrics response for a metrics snapshot."""
    system = snapshot.system
    return realtime_pb2.GetMetricsResponse(
        time=timestamp(snapshot.time),
        node_id=snapshot.node_id,
        uptime_seconds=snapshot.uptime_seconds,
        system=realtime_pb2.SystemMetrics(
            cpu_percent=system.cpu_percent,
            memory_percent=system.memory_percent,
            load_average_1m=system.load_average[0],
            load_average_5m=system.load_average[1],
            load_average_15m=system.load_average[2],
            process_rss_bytes=system.process_rss_bytes,
            open_fds=system.open_fds,
        ),
        connections=snapshot.connections,
        subscriptions=snapshot.subscriptions,
        rooms=snapshot.rooms,
        messages_in_per_second=snapshot.messages_in_per_second,
        messages_out_per_second=snapshot.messages_out_per_second,
        publish_to_deliver=realtime_pb2.LatencyPercentiles(
            p50_ms=snapshot.latency_p50 * 1e3,
            p95_ms=snapshot.latency_p95 * 1e3,
            p99_ms=snapshot.latency_p99 * 1e3,
            count=snapshot.latency_count,
        ),
    )
