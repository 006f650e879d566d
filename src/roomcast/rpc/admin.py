"""AdminService: operators' questions about rooms, over gRPC (and grpcurl)."""

from __future__ import annotations

from typing import Any

import grpc

from ..node import Node
from ..v1 import admin_pb2, admin_pb2_grpc, event_pb2
from .calls import authenticate, handle_errors
from .convert import member_to_pb, position_from_pb, position_to_pb, room_to_pb

__all__ = ["AdminServicer"]

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
        rooms, truncated = await self.node.list_rooms(principal, request.prefix, request.tenant_id)
        return admin_pb2.ListRoomsResponse(
            rooms=[room_to_pb(room) for room in rooms], truncated=truncated
        )

    @handle_errors
    async def GetPresence(  # noqa: N802
        self, request: admin_pb2.GetPresenceRequest, context: Context
    ) -> admin_pb2.GetPresenceResponse:
        principal = authenticate(self.node, context)
        members = self.node.members(principal, request.room, request.tenant_id)
        return admin_pb2.GetPresenceResponse(members=[member_to_pb(m) for m in members])

    @handle_errors
    async def GetHistory(  # noqa: N802
        self, request: admin_pb2.GetHistoryRequest, context: Context
    ) -> admin_pb2.GetHistoryResponse:
        principal = authenticate(self.node, context)
        since = position_from_pb(request.since) if request.HasField("since") else None
        page = await self.node.history(
            principal, request.room, request.tenant_id, since, request.limit
        )
        return admin_pb2.GetHistoryResponse(
            events=[event_pb2.Event.FromString(data) for data in page.items],
            position=position_to_pb(page.top),
            recovered=page.recovered,
        )
