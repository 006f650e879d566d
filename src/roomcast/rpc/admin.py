"""AdminService: operators' questions about rooms, over gRPC (and grpcurl)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.json_format import MessageToDict

from ..node import Node
from ..presence import Member, members_page
from ..v1 import admin_pb2, admin_pb2_grpc, event_pb2
from .calls import authenticate, decoding, handle_errors
from .convert import (
    alert_to_pb,
    member_to_pb,
    position_from_pb,
    position_to_pb,
    room_to_pb,
)

__all__ = ["AdminServicer", "add_admin_service"]

# A PresenceEntry's bytes in a response, besides its ids: the timestamp and
# the tags and lengths of the fields and of the entry itself.
_ENTRY_OVERHEAD = 24


def _entry_size(member: Member) -> int:
    return (
        len(member.user_id) + len(member.tenant or "") + len(member.connection_id) + _ENTRY_OVERHEAD
    )


Context = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """The AdminService, a thin shell over :class:`~roomcast.node.Node`."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @handle_errors
    async def ListRooms(  # noqa: N802 (gRPC method names)
        self, request: admin_pb2.ListRoomsRequest, context: Context
    ) -> admin_pb2.ListRoomsResponse:
        principal = authenticate(self.node, context)
        rooms, truncated = await self.node.operations.list_rooms(
            principal, request.prefix, request.tenant_id
        )
        return admin_pb2.ListRoomsResponse(
            rooms=[room_to_pb(room) for room in rooms], truncated=truncated
        )

    @handle_errors
    async def GetPresence(  # noqa: N802
        self, request: admin_pb2.GetPresenceRequest, context: Context
    ) -> admin_pb2.GetPresenceResponse:
        principal = authenticate(self.node, context)
        members = await self.node.members(principal, request.room, request.tenant_id)
        page, following = members_page(
            members, request.page_token, self.node.settings.max_reply_bytes, _entry_size
        )
        return admin_pb2.GetPresenceResponse(
            members=[member_to_pb(m) for m in page], next_page_token=following
        )

    @handle_errors
    async def GetHistory(  # noqa: N802
        self, request: admin_pb2.GetHistoryRequest, context: Context
    ) -> admin_pb2.GetHistoryResponse:
        principal = authenticate(self.node, context)
        since = position_from_pb(request.since) if request.HasField("since") else None
        page = await self.node.history(
            principal,
            request.room,
            request.tenant_id,
            since,
            request.limit,
            self.node.settings.max_reply_bytes,
        )
        return admin_pb2.GetHistoryResponse(
            events=[event_pb2.Event.FromString(data) for data in page.items],
            position=position_to_pb(page.top),
            recovered=page.recovered,
            more=page.more,
        )

    @handle_errors
    async def GetAlerts(  # noqa: N802
        self, request: admin_pb2.GetAlertsRequest, context: Context
    ) -> admin_pb2.GetAlertsResponse:
        principal = authenticate(self.node, context)
        firing, recent = self.node.operations.alerts(principal, request.tenant_id)
        node_id = self.node.settings.node_id
        return admin_pb2.GetAlertsResponse(
            firing=[alert_to_pb(a, node_id) for a in firing],
            recent=[alert_to_pb(a, node_id) for a in recent],
        )

    @handle_errors
    async def ClearAlerts(  # noqa: N802
        self, request: admin_pb2.ClearAlertsRequest, context: Context
    ) -> admin_pb2.ClearAlertsResponse:
        principal = authenticate(self.node, context)
        cleared = self.node.operations.clear_alerts(principal, request.include_firing)
        return admin_pb2.ClearAlertsResponse(cleared=cleared)

    @handle_errors
    async def TrackActivity(  # noqa: N802
        self, request: admin_pb2.TrackActivityRequest, context: Context
    ) -> admin_pb2.TrackActivityResponse:
        principal = authenticate(self.node, context)
        published = await self.node.operations.track_activity(
            principal,
            request.tenant_id,
            user_id=request.user_id,
            action=request.action,
            session_id=request.session_id,
            ip_address=request.ip_address,
            user_agent=request.user_agent,
            details=MessageToDict(request.details) if request.HasField("details") else None,
        )
        return admin_pb2.TrackActivityResponse(id=published.id, offset=published.offset)

    @handle_errors
    async def DisconnectUser(  # noqa: N802
        self, request: admin_pb2.DisconnectUserRequest, context: Context
    ) -> admin_pb2.DisconnectUserResponse:
        principal = authenticate(self.node, context)
        closed = await self.node.operations.disconnect_user(
            principal, request.user_id, request.tenant_id, request.connection_id, request.reason
        )
        return admin_pb2.DisconnectUserResponse(connections=closed)


def add_admin_service(servicer: AdminServicer, server: grpc.aio.Server) -> None:
    """Register the AdminService on ``server``.

    The generated ``add_AdminServiceServicer_to_server`` lets grpcio answer
    bytes that are no valid request with UNKNOWN and the text of the
    ``DecodeError``; this table refuses them with INVALID_ARGUMENT instead
    (see :func:`~roomcast.rpc.calls.decoding`). It is built from the service
    descriptor, so an RPC added to admin.proto is covered without a new entry.

    Raises:
        TypeError: admin.proto has a streaming RPC, which this table cannot
            serve (its requests could not all pass through ``decoding``).
    """
    service = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            raise TypeError(f"AdminService.{method.name}: streaming RPCs need their own handler")
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=decoding(request.FromString, method.input_type.name),
            response_serializer=response.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
