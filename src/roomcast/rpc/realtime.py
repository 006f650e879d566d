"""RealtimeService: publish, subscribe, membership and metrics over gRPC."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc

from ..auth import Principal
from ..brokers import subscribe_frame
from ..errors import SlowConsumer, TooLarge, Unavailable
from ..node import Node
from ..v1 import realtime_pb2, realtime_pb2_grpc
from .calls import authenticate, decoding, handle_errors
from .convert import (
    batch_response,
    metrics_to_pb,
    position_from_pb,
    position_to_pb,
    published_to_pb,
)
from .payloads import CheckedBatch, read_publish, read_publish_batch
from .stream import StreamRecipient

__all__ = ["RealtimeServicer", "add_realtime_service"]

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


class RealtimeServicer(realtime_pb2_grpc.RealtimeServiceServicer):
    """The RealtimeService, a thin shell over :class:`~roomcast.node.Node`."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.streams: set[StreamRecipient] = set()

    @handle_errors
    async def Publish(  # type: ignore[override]  # noqa: N802 (gRPC method names)
        self, request: CheckedBatch, context: Context
    ) -> realtime_pb2.PublishResponse:
        # The request is a PublishRequest read through the gate as a batch
        # of one, its payload encoded (rpc/payloads.py).
        principal = authenticate(self.node, context)
        if request.refused:
            raise request.refused[0]
        return published_to_pb(await self.node.publish(principal, request.events[0]))

    @handle_errors
    async def PublishBatch(  # type: ignore[override]  # noqa: N802
        self, request: CheckedBatch, context: Context
    ) -> bytes:
        # The request is PublishBatchRequest read through the gate with its
        # payloads encoded (rpc/payloads.py); the response goes out encoded
        # (batch_response).
        principal = authenticate(self.node, context)
        outcomes = await self.node.publish_batch(principal, request.events, request.refused)
        return batch_response(outcomes)

    @handle_errors
    async def Subscribe(  # type: ignore[override]  # noqa: N802
        self, request: realtime_pb2.SubscribeRequest, context: Context
    ) -> None:
        # Writes pre-encoded frames with context.write instead of yielding
        # messages (the base class's shape): see add_realtime_service.
        principal = authenticate(self.node, context)
        settings = self.node.settings
        recipient = StreamRecipient(settings.subscriber_buffer_bytes)
        if len(request.since) > settings.max_subscribe_since:
            raise TooLarge(
                f"since: {len(request.since)} rooms given; "
                f"the limit is {settings.max_subscribe_since}"
            )
        since = {name: position_from_pb(position) for name, position in request.since.items()}
        subscription = await self.node.subscribe(
            principal, recipient, list(request.rooms), since, request.tenant_id
        )
        self.streams.add(recipient)
        try:
            floors = await self._resume(principal, subscription.resume, context)
            await context.write(
                realtime_pb2.SubscribeResponse(
                    subscribed=realtime_pb2.Subscribed(rooms=list(request.rooms))
                ).SerializeToString()
            )
            await self._pump(recipient, floors, context)
        except asyncio.CancelledError:
            # Cancelled by the recipient (overflow, shutdown) or by the client
            # going away; only in the first case is there someone to tell.
            if not recipient.ended:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            self.streams.discard(recipient)
            await self.node.unsubscribe(subscription)
        self._raise_ending(recipient)

    def _raise_ending(self, recipient: StreamRecipient) -> None:
        if recipient.overflowed:
            self.node.metrics.counters.slow_consumers += 1
            raise SlowConsumer(
                f"subscriber fell behind by more than {self.node.settings.subscriber_buffer_bytes} "
                "bytes of events; resubscribe with since to recover"
            )
        raise Unavailable("server is shutting down; resubscribe with since to resume")

    async def _resume(
        self, principal: Principal, resume: list[Any], context: Context
    ) -> dict[str, int]:
        """Replay history for the rooms of ``since``; the offsets replayed up to.

        Each room is replayed in pages of about ``max_frame_bytes``, one
        message each, read only when the last was written: a stream whose
        reader stalls holds one page, not the room's history.
        """
        node, budget = self.node, self.node.settings.max_frame_bytes
        floors: dict[str, int] = {}
        for name, resolved, position in resume:
            page = await node.replay(principal, resolved, position, budget)
            top, recovered, reason = page.top, page.recovered, page.reason
            while page.items:
                await context.write(b"".join([subscribe_frame(data) for data in page.items]))
                if not page.more:
                    break
                page = await node.replay_next(principal, resolved, page, top, budget)
                if not page.recovered:
                    recovered, reason = False, page.reason
                    break
            if recovered:
                floors[resolved.room.key] = top.offset
            await context.write(
                realtime_pb2.SubscribeResponse(
                    recovery=realtime_pb2.Recovery(
                        room=name,
                        tenant_id=resolved.room.tenant or "",
                        recovered=recovered,
                        position=position_to_pb(top),
                        reason=reason,
                    )
                ).SerializeToString()
            )
        return floors

    async def _pump(
        self, recipient: StreamRecipient, floors: dict[str, int], context: Context
    ) -> None:
        """Write queued events until the stream must end."""
        max_frame = self.node.settings.max_frame_bytes
        window = self.node.settings.stream_coalesce_seconds
        metrics = self.node.metrics
        loop = asyncio.get_running_loop()
        last_write = 0.0
        while not recipient.ended:
            await recipient.wait()
            # A write costs grpcio far more than an event: while events come
            # faster than one per window, hold the next write until the window
            # since the last one has passed, so they share it. A quiet
            # stream writes at once.
            wait = last_write + window - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if recipient.ended:
                return
            batch = recipient.take(max_frame)
            if floors:
                # Events that arrived during the replay and were replayed already.
                batch = [p for p in batch if p.offset == 0 or p.offset > floors.get(p.room.key, 0)]
            if not batch:
                continue
            await context.write(b"".join([p.grpc_frame for p in batch]))
            last_write = loop.time()
            metrics.record_deliveries([p.accepted_ns for p in batch], time.time_ns())

    @handle_errors
    async def JoinRoom(  # noqa: N802
        self, request: realtime_pb2.JoinRoomRequest, context: Context
    ) -> realtime_pb2.JoinRoomResponse:
        principal = authenticate(self.node, context)
        count = await self.node.join(
            principal, request.room, request.tenant_id, request.user_id, request.connection_id
        )
        return realtime_pb2.JoinRoomResponse(connections=count)

    @handle_errors
    async def LeaveRoom(  # noqa: N802
        self, request: realtime_pb2.LeaveRoomRequest, context: Context
    ) -> realtime_pb2.LeaveRoomResponse:
        principal = authenticate(self.node, context)
        count = await self.node.leave(
            principal, request.room, request.tenant_id, request.user_id, request.connection_id
        )
        return realtime_pb2.LeaveRoomResponse(connections=count)

    @handle_errors
    async def GetMetrics(  # noqa: N802
        self, request: realtime_pb2.GetMetricsRequest, context: Context
    ) -> realtime_pb2.GetMetricsResponse:
        principal = authenticate(self.node, context)
        return metrics_to_pb(
            await self.node.operations.metrics_payload(principal, cluster=request.cluster)
        )

    def stop_streams(self) -> None:
        """End every Subscribe stream (shutdown)."""
        for recipient in list(self.streams):
            recipient.stop()


def _encoded(message: bytes) -> bytes:
    # Subscribe frames (encoded once per event by the fan-out) and PublishBatch
    # responses (framed by hand) arrive encoded; pass them on.
    return message


def add_realtime_service(servicer: RealtimeServicer, server: grpc.aio.Server) -> None:
    """Register the RealtimeService on ``server``.

    The generated ``add_RealtimeServiceServicer_to_server`` would encode
    every streamed message again; this table differs in sending the
    Subscribe stream's pre-encoded frames and the hand-framed PublishBatch
    response as they are, and in refusing undecodable requests with
    INVALID_ARGUMENT (see :func:`~roomcast.rpc.calls.decoding`).
    """
    pb = realtime_pb2
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Publish": grpc.unary_unary_rpc_method_handler(
            servicer.Publish,
            request_deserializer=decoding(read_publish, "PublishRequest"),
            response_serializer=pb.PublishResponse.SerializeToString,
        ),
        "PublishBatch": grpc.unary_unary_rpc_method_handler(
            servicer.PublishBatch,
            request_deserializer=decoding(read_publish_batch, "PublishBatchRequest"),
            response_serializer=_encoded,
        ),
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            servicer.Subscribe,
            request_deserializer=decoding(pb.SubscribeRequest.FromString, "SubscribeRequest"),
            response_serializer=_encoded,
        ),
        "JoinRoom": grpc.unary_unary_rpc_method_handler(
            servicer.JoinRoom,
            request_deserializer=decoding(pb.JoinRoomRequest.FromString, "JoinRoomRequest"),
            response_serializer=pb.JoinRoomResponse.SerializeToString,
        ),
        "LeaveRoom": grpc.unary_unary_rpc_method_handler(
            servicer.LeaveRoom,
            request_deserializer=decoding(pb.LeaveRoomRequest.FromString, "LeaveRoomRequest"),
            response_serializer=pb.LeaveRoomResponse.SerializeToString,
        ),
        "GetMetrics": grpc.unary_unary_rpc_method_handler(
            servicer.GetMetrics,
            request_deserializer=decoding(pb.GetMetricsRequest.FromString, "GetMetricsRequest"),
            response_serializer=pb.GetMetricsResponse.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["RealtimeService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
