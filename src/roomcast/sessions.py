"""Live connections on this node: who is connected, which rooms they are in.

The WebSocket bridge registers every authenticated connection here, and the
gRPC ``JoinRoom``/``LeaveRoom`` calls move connections in and out of rooms
here, so both paths share one implementation. Joining a room subscribes the
connection (hub, and the broker on the node's first interest), records its
presence, announces it to the room where the room's rule has presence on,
and answers with the room's position and the events missed since the
client's last one.

A connection joins its own rooms when it connects (``user.{u}.private``,
``user.{u}.notifications``, ``tenant.{t}.users``, ``tenant.{t}.notifications``,
``tenant.{t}.admins`` for tenant admins, ``platform.admins`` for super
admins): the rooms the platform uses to reach one user, one tenant, or the
operators.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .auth import Principal
from .brokers import Broker, Published
from .config import Settings
from .connections import Joined, LiveConnection
from .errors import (
    BrokerError,
    ConnectionLimit,
    Forbidden,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    NotMember,
)
from .history import Page, Position
from .hub import Hub
from .policy import Action, Policy, ResolvedRoom, RoomRule, own_rooms
from .ports import Publish, Publishes, PublishInput
from .presence import ConnectionId, Member, Presence
from .rooms import Room, TenantId, parse_segment

__all__ = ["Sessions", "SessionsHost"]

log = logging.getLogger(__name__)

# Signals: what a room's members are told besides events (docs/protocol.md).
PRESENCE_JOIN = "presence.join"
PRESENCE_LEAVE = "presence.leave"
TYPING = "typing"
CURSOR = "cursor"
MAX_PRESENCE_LISTED = 1_000


@dataclass(slots=True)
class _Live:
    connection: LiveConnection
    principal: Principal
    member: Member
    rooms: dict[str, tuple[Room, RoomRule]] = field(default_factory=dict)


def _user(principal: Principal) -> tuple[str, TenantId | None, str]:
    return ("user", principal.tenant, principal.subject)


def _tenant(principal: Principal) -> tuple[str, TenantId | None, str]:
    return ("tenant", principal.tenant, "")


class SessionsHost(Publishes, Protocol):
    """What the sessions use of their node: its parts, and what it does with rooms.

    A protocol, not the node: the node builds the sessions, and sessions.py
    does not import node.py (``roomcast.node.Node`` is the one host).
    """

    settings: Settings
    policy: Policy
    presence: Presence
    hub: Hub[Any]
    broker: Broker

    def check_publish(
        self, principal: Principal, item: PublishInput, connection_id: str
    ) -> None: ...

    async def signal(
        self,
        resolved: ResolvedRoom,
        principal: Principal,
        connection_id: str,
        kind: str,
        data: Mapping[str, Any],
    ) -> None: ...

    async def position(self, resolved: ResolvedRoom) -> Page[bytes]: ...

    async def replay(
        self,
        principal: Principal,
        resolved: ResolvedRoom,
        since: Position,
        max_bytes: int,
        limit: int = 0,
    ) -> Page[bytes]: ...

    async def room_members(self, room_key: str) -> list[Member]: ...

    async def share_presence(self, room_key: str, connection_id: ConnectionId) -> None: ...

    async def unshare_presence(self, room_key: str, connection_id: ConnectionId) -> None: ...


class Sessions:
    """The live connections of one node and the rooms they are in.

    Args:
        node: the node whose policy, hub, presence and broker to use.
    """

    def __init__(self, node: SessionsHost) -> None:
        self._node = node
        self._live: dict[ConnectionId, _Live] = {}
        # Open connections per user ("user", tenant, sub) and per tenant ("tenant", tenant, "").
        self._open: Counter[tuple[str, TenantId | None, str]] = Counter()

    def __len__(self) -> int:
        return len(self._live)

    # -- connecting ----------------------------------------------------------

    def admit(self, principal: Principal) -> None:
        """Check the connection limits before a connection of ``principal`` opens.

        Raises:
            ConnectionLimit: the user or the tenant has too many connections.
        """
        settings = self._node.settings
        if self._open[_user(principal)] >= settings.max_connections_per_user:
            raise ConnectionLimit(
                f"user {principal.subject!r} has {settings.max_connections_per_user} "
                "connections open, the most allowed"
            )
        tenant_limit = settings.max_connections_per_tenant
        if tenant_limit and self._open[_tenant(principal)] >= tenant_limit:
            raise ConnectionLimit(
                f"the tenant has {tenant_limit} connections open, the most allowed"
            )

    async def connect(self, connection: LiveConnection, principal: Principal) -> list[Joined]:
        """Register a connection and join its own rooms.

        Raises:
            ConnectionLimit: see :meth:`admit`.
        """
        self.admit(principal)
        member = Member(connection.id, principal.subject, principal.tenant, time.time())
        self._live[connection.id] = _Live(connection, principal, member)
        self._open.update((_user(principal), _tenant(principal)))
        self._node.presence.connect(member)
        joined = []
        for name in own_rooms(principal):
            resolved = self._node.policy.resolve(principal, name)
            if self._node.policy.covers(principal, resolved.room):  # an operator may close one
                joined.append(await self._enter(self._live[connection.id], resolved, None))
        return joined

    async def disconnect(self, connection_id: ConnectionId) -> None:
        """Take a connection out of every room and forget it (idempotent)."""
        live = self._live.pop(connection_id, None)
        if live is None:
            return
        for room, rule in list(live.rooms.values()):
            await self._exit(live, room, rule)
        self._node.presence.disconnect(connection_id)
        self._open.subtract((_user(live.principal), _tenant(live.principal)))
        self._open += Counter()  # drops the keys that reached zero

    def by_tenant(self) -> dict[TenantId | None, int]:
        """Open connections per tenant (None: platform-level principals)."""
        return {tenant: n for (kind, tenant, _), n in self._open.items() if kind == "tenant" and n}

    def principal(self, connection_id: ConnectionId) -> Principal:
        """The principal a live connection acts as."""
        return self._live[connection_id].principal

    def reauthenticate(self, connection_id: ConnectionId, principal: Principal) -> None:
        """A connection sent a fresh token for the same identity.

        Raises:
            Forbidden: the token is for another user or tenant.
        """
        live = self._live[connection_id]
        old = live.principal
        if (principal.subject, principal.tenant) != (old.subject, old.tenant):
            raise Forbidden("a refreshed token must be for the same user and tenant")
        live.principal = principal

    # -- rooms ---------------------------------------------------------------

    async def join(
        self, connection_id: ConnectionId, name: str, since: Position | None, max_bytes: int
    ) -> Joined:
        """A client asks to join a room (the room policy's subscribe right).

        Args:
            connection_id: the client's connection.
            name: the room.
            since: the last position the client saw there, to get what it missed.
            max_bytes: the budget of the missed events in the answer; the
                rest is read on with :meth:`Node.replay` (``Joined.more``).

        Raises:
            RoomcastError: the name is bad, the policy refuses, or a limit is hit.
        """
        live = self._live[connection_id]
        resolved = self._node.policy.resolve(live.principal, name)
        self._node.policy.check(live.principal, resolved, Action.SUBSCRIBE)
        return await self._enter(live, resolved, since, max_bytes)

    async def leave(self, connection_id: ConnectionId, name: str) -> Room:
        """A client leaves a room.

        Raises:
            NotMember: it is not in the room.
        """
        live = self._live[connection_id]
        room, rule = self._joined(live, name)
        await self._exit(live, room, rule)
        return room

    def room(self, connection_id: ConnectionId, name: str) -> ResolvedRoom:
        """A room the connection is in.

        Raises:
            InvalidRoom: the name is bad.
            NotMember: the connection has not joined it.
        """
        live = self._live[connection_id]
        room, rule = self._joined(live, name)
        return ResolvedRoom(room, rule, rule.match(room.name) or {})

    def _joined(self, live: _Live, name: str) -> tuple[Room, RoomRule]:
        resolved = self._node.policy.resolve(live.principal, name)
        entry = live.rooms.get(resolved.room.key)
        if entry is None:
            raise NotMember(f"room {name!r}: join it first")
        return entry

    async def _enter(
        self, live: _Live, resolved: ResolvedRoom, since: Position | None, max_bytes: int = 0
    ) -> Joined:
        node, room, rule = self._node, resolved.room, resolved.rule
        connection = live.connection
        fresh = room.key not in live.rooms
        if fresh and len(live.rooms) >= node.settings.ws_max_rooms:
            raise LimitExceeded(
                f"room {room.name!r}: a connection may be in {node.settings.ws_max_rooms} rooms"
            )
        # Live events of the room wait until the answer is out, so none that
        # comes after the room's position overtakes room_joined (a rejoin of a
        # room the connection is in holds them too).
        connection.hold(room.key)
        if fresh:
            live.rooms[room.key] = (room, rule)
            node.presence.join(room.key, live.member, time.time())
            await node.share_presence(room.key, live.member.connection_id)
        try:
            if fresh and node.hub.add(room, connection):
                await node.broker.listen(room.key)
            if fresh and rule.presence:
                await self._announce(live, room, rule, PRESENCE_JOIN)
            page = await (
                node.replay(live.principal, resolved, since, max_bytes)
                if since
                else node.position(resolved)
            )
        except BaseException:
            # A failed first join is as if it never happened; a failed rejoin
            # leaves the connection in the room as it was.
            connection.release(room.key, None if fresh else -1)
            if fresh:
                live.rooms.pop(room.key, None)
                node.presence.leave(room.key, live.member.connection_id)
                await node.unshare_presence(room.key, live.member.connection_id)
                if node.hub.discard(room, connection):
                    await node.broker.unlisten(room.key)
            raise
        members = (await node.room_members(room.key))[:MAX_PRESENCE_LISTED] if rule.presence else []
        return Joined(
            room, page.top, page.recovered, page.reason, page.items, members, page.more, resolved
        )

    async def _exit(self, live: _Live, room: Room, rule: RoomRule) -> None:
        node = self._node
        live.rooms.pop(room.key, None)
        node.presence.leave(room.key, live.member.connection_id)
        await node.unshare_presence(room.key, live.member.connection_id)
        if node.hub.discard(room, live.connection):
            await node.broker.unlisten(room.key)
        if rule.presence:
            try:
                await self._announce(live, room, rule, PRESENCE_LEAVE)
            except BrokerError as error:
                # The connection is out of the room whatever the broker says
                # (and a disconnect must go on to its other rooms); its
                # shared entry, no longer refreshed, expires by itself.
                log.info("leave of %s not announced: %s", room.name, error.message)

    async def _announce(self, live: _Live, room: Room, rule: RoomRule, kind: str) -> None:
        resolved = ResolvedRoom(room, rule, {})
        await self._node.signal(resolved, live.principal, live.member.connection_id, kind, {})

    # -- acting in rooms -----------------------------------------------------

    async def send(
        self, connection_id: ConnectionId, event: str, payload: bytes, names: Sequence[str]
    ) -> list[tuple[str, Published]]:
        """Publish a client's event to rooms it is in, as that client.

        ``payload`` is the encoded ``Struct`` from the gate
        (:func:`~roomcast.gate.encode_json`).

        Every room is checked before anything is published.

        Raises:
            RoomcastError: a room is bad, not joined, or closed to the client.
        """
        live = self._live[connection_id]
        if not names:
            raise InvalidArgument("rooms: at least one room is required")
        if len(set(names)) != len(names):
            raise InvalidArgument("rooms: a room is named twice")
        for name in names:
            self._joined(live, name)
        items = [Publish(name, event, payload) for name in names]
        for item in items:  # authorise every room first: all or nothing
            self._node.check_publish(live.principal, item, connection_id)
        return [
            (
                item.room,
                await self._node.publish(
                    live.principal, item, connection_id=connection_id, is_member=True
                ),
            )
            for item in items
        ]

    async def signal(
        self, connection_id: ConnectionId, name: str, kind: str, data: Mapping[str, Any]
    ) -> None:
        """Send typing or cursor state to a room's other members.

        Raises:
            RoomcastError: the room is bad, not joined, or closed to the client.
        """
        resolved = self._signal_room(connection_id, name)
        live = self._live[connection_id]
        await self._node.signal(resolved, live.principal, connection_id, kind, data)

    def check_signal(self, connection_id: ConnectionId, name: str) -> Room:
        """The room a connection may signal in: it joined it and may publish there.

        Raises:
            RoomcastError: the room is bad, not joined, or closed to the client.
        """
        return self._signal_room(connection_id, name).room

    def _signal_room(self, connection_id: ConnectionId, name: str) -> ResolvedRoom:
        live = self._live[connection_id]
        room, rule = self._joined(live, name)
        resolved = ResolvedRoom(room, rule, rule.match(room.name) or {})
        self._node.policy.check(live.principal, resolved, Action.PUBLISH, is_member=True)
        return resolved

    # -- moved by a backend (JoinRoom / LeaveRoom) ----------------------------

    def targets(
        self, resolved: ResolvedRoom, tenant: TenantId | None, user_id: str, connection_id: str
    ) -> list[ConnectionId]:
        """The live connections a JoinRoom/LeaveRoom call means.

        A call names one connection, or a user (all of their connections) of
        ``tenant``. A connection of another tenant than the room's is never
        found: a tenant's room only ever holds that tenant's connections.

        Raises:
            InvalidArgument: neither a user nor a connection is named.
            NotFound: the named connection is not live in the tenant.
        """
        room_tenant = resolved.room.tenant
        if connection_id:
            live = self._live.get(ConnectionId(connection_id))
            if live is None or (
                (room_tenant is not None or tenant is not None) and live.member.tenant != tenant
            ):
                raise NotFound(f"connection_id: {connection_id!r} is not connected")
            return [live.member.connection_id]
        if not user_id:
            raise InvalidArgument("user_id or connection_id: one of them is required")
        parse_segment(user_id, field_name="user_id")
        return [
            cid for cid in self._node.presence.connections_of(tenant, user_id) if cid in self._live
        ]

    async def place(self, connection_id: ConnectionId, resolved: ResolvedRoom) -> bool:
        """Put a connection into a room for a backend; the client is told.

        Returns:
            True when it was not in the room before.
        """
        live = self._live.get(connection_id)
        if live is None or resolved.room.key in live.rooms:
            return False
        joined = await self._enter(live, resolved, None)
        live.connection.joined(joined)
        return True

    async def remove(self, connection_id: ConnectionId, resolved: ResolvedRoom) -> bool:
        """Take a connection out of a room for a backend; the client is told.

        Returns:
            True when it was in the room.
        """
        live = self._live.get(connection_id)
        entry = None if live is None else live.rooms.get(resolved.room.key)
        if live is None or entry is None:
            return False
        await self._exit(live, *entry)
        live.connection.left(entry[0])
        return True

    def disconnect_user(
        self, tenant: TenantId | None, user_id: str, connection_id: str, reason: str
    ) -> int:
        """Close a user's live connections (all, or one) with 4001.

        Returns:
            How many were closed.
        """
        parse_segment(user_id, field_name="user_id")
        closed = 0
        for cid in self._node.presence.connections_of(tenant, user_id):
            live = self._live.get(cid)
            if live is None or (connection_id and cid != connection_id):
                continue
            live.connection.disconnect(4001, reason or "disconnected by the server")
            closed += 1
        return closed

    def connections(self) -> list[LiveConnection]:
        """Every live connection (for shutdown)."""
        return [live.connection for live in self._live.values()]
