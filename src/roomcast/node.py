"""A roomcast node: the one place where a request becomes an effect.

Both shells (gRPC in ``rpc/``, WebSocket in ``bridge/``) call these methods
after authenticating; the node checks the room policy, hands events to the
broker, and fans delivered events out to its local recipients. No protocol
logic lives in the shells and none is written twice.

An event's path: ``prepare`` (validate, authorise, build the ``Event``) →
``Broker.publish`` (offset, history) → ``_fan_out`` (the hub's plan) →
``Recipient.deliver`` (a non-blocking append to a bounded buffer).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.struct_pb2 import Struct

from .auth import Principal, Role, TokenVerifier
from .brokers import Broker, Draft, Publication, Published, Retention
from .config import Settings
from .errors import Forbidden, InvalidArgument, NotFound, RoomcastError, TooLarge, Unavailable
from .history import Page, Position
from .hub import ANY_TENANT, Hub, PatternSubscription
from .metrics import Collector, Snapshot
from .policy import Action, Policy, ResolvedRoom
from .presence import Member, Presence
from .rooms import Room, TenantId, is_pattern, parse_event_name, parse_pattern, parse_segment
from .tasks import Supervisor
from .v1.event_pb2 import Event, Sender
from .wire import field_bytes, field_string, field_varint

__all__ = [
    "MAX_HISTORY_PAGE",
    "Node",
    "PublishInput",
    "Recipient",
    "RoomSummary",
    "Subscription",
]

log = logging.getLogger(__name__)

MAX_HISTORY_PAGE = 1_000
MAX_IDEMPOTENCY_KEY = 128
MAX_LISTED_ROOMS = 10_000
SWEEP_INTERVAL = 30.0
# Event field numbers (proto/roomcast/v1/event.proto) framed by _prepare.
EVENT_ID, EVENT_PAYLOAD, EVENT_TIME = 1, 4, 7
BATCH_CHUNK = 256


class Recipient(Hashable, Protocol):
    """Something on this node that receives events: a stream, a connection."""

    def deliver(self, publication: Publication) -> None:
        """Take one event. Must not block; overflow is the recipient's to handle."""


class PublishInput(Protocol):
    """One publish as a shell received it.

    ``roomcast.v1.PublishRequest`` has exactly these attributes, so the gRPC
    shell passes its messages through unconverted.
    """

    @property
    def room(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def payload(self) -> Struct: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def skip_history(self) -> bool: ...
    @property
    def idempotency_key(self) -> str: ...


@dataclass(slots=True)
class Subscription:
    """A recipient's live subscription; :meth:`Node.unsubscribe` ends it.

    Attributes:
        rooms: exact rooms followed, by key.
        patterns: pattern subscriptions.
        resume: rooms to replay, with the position to replay from.
    """

    recipient: Recipient
    rooms: dict[str, Room] = field(default_factory=dict)
    patterns: list[PatternSubscription[Recipient]] = field(default_factory=list)
    resume: list[tuple[str, ResolvedRoom, Position]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room as ListRooms shows it."""

    room: Room
    members: int
    subscribers: int
    position: Position
    history_size: int


@dataclass(slots=True)
class _PublishCall:
    """One publishing call: who, and what it resolved already.

    A batch names the same few rooms and events many times; resolving and
    authorising each once per call keeps the per-event cost to encoding.
    """

    principal: Principal
    sender: Sender
    is_member: bool
    rooms: dict[tuple[str, str], tuple[ResolvedRoom, Retention]] = field(default_factory=dict)
    heads: dict[tuple[str, str], bytes] = field(default_factory=dict)
    # Every event of a call is accepted at the call's moment.
    accepted_ns: int = field(default_factory=time.time_ns)
    time: bytes = b""

    def __post_init__(self) -> None:
        seconds, nanos = divmod(self.accepted_ns, 1_000_000_000)
        self.time = field_bytes(EVENT_TIME, field_varint(1, seconds) + field_varint(2, nanos))


def _retention(resolved: ResolvedRoom) -> Retention:
    return Retention(resolved.rule.history_size, resolved.rule.history_ttl)


class Node:
    """One roomcast node.

    Args:
        settings: the node's settings.
        policy: the room policy.
        verifier: checks bearer tokens.
        broker: where events get offsets and history.
    """

    def __init__(
        self, settings: Settings, policy: Policy, verifier: TokenVerifier, broker: Broker
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.verifier = verifier
        self.broker = broker
        self.hub: Hub[Recipient] = Hub()
        self.presence = Presence()
        self.metrics = Collector(settings.node_id)
        self.supervisor = Supervisor()
        self.draining = False
        self.streams = 0
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    async def start(self) -> None:
        """Connect the broker and start the background tasks."""
        await self.broker.start(self._fan_out)
        self.supervisor.spawn("metrics", self._sample_metrics)
        self.supervisor.spawn("sweep", self._sweep)

    async def close(self) -> None:
        """Stop the background tasks and the broker."""
        await self.supervisor.close()
        await self.broker.close()

    def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token (see :class:`TokenVerifier`)."""
        return self.verifier.verify(token)

    # -- publishing ----------------------------------------------------------

    def _sender(self, principal: Principal, connection_id: str) -> Sender:
        return Sender(
            user_id=principal.subject,
            tenant_id=principal.tenant or "",
            connection_id=connection_id,
            service=principal.subject if principal.is_service and not connection_id else "",
        )

    def _prepare(self, call: _PublishCall, item: PublishInput) -> Draft:
        """Validate, authorise and encode one event (everything but its position)."""
        target = call.rooms.get((item.room, item.tenant_id))
        if target is None:
            resolved = self.policy.resolve(call.principal, item.room, item.tenant_id)
            self.policy.check(call.principal, resolved, Action.PUBLISH, is_member=call.is_member)
            target = call.rooms[(item.room, item.tenant_id)] = (resolved, _retention(resolved))
        resolved, retention = target
        room = resolved.room
        head = call.heads.get((room.key, item.event))
        if head is None:
            name = parse_event_name(item.event)
            head = call.heads[(room.key, item.event)] = Event(
                room=room.name, event=name, sender=call.sender, tenant_id=room.tenant or ""
            ).SerializeToString()
        payload = item.payload.SerializeToString()
        if len(payload) > self.settings.max_payload_bytes:
            raise TooLarge(
                f"payload: {len(payload)} bytes encoded; "
                f"the limit is {self.settings.max_payload_bytes}"
            )
        if len(item.idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument(f"idempotency_key: longer than {MAX_IDEMPOTENCY_KEY} characters")
        event_id = f"{self._id_prefix}-{next(self._ids):x}"
        body = b"".join(
            (head, field_bytes(EVENT_PAYLOAD, payload), field_string(EVENT_ID, event_id), call.time)
        )
        return Draft(
            room,
            event_id,
            body,
            call.accepted_ns,
            retention,
            item.skip_history,
            item.idempotency_key,
        )

    def _check_open(self) -> None:
        if self.draining:
            raise Unavailable("server is shutting down; retry on another node")

    async def publish(
        self,
        principal: Principal,
        item: PublishInput,
        *,
        connection_id: str = "",
        is_member: bool = False,
    ) -> Published:
        """Publish one event.

        Raises:
            RoomcastError: the input is bad, the policy refuses, or the broker fails.
        """
        self._check_open()
        call = _PublishCall(principal, self._sender(principal, connection_id), is_member)
        result = await self.broker.publish(self._prepare(call, item))
        self.metrics.counters.messages_in += 1
        return result

    async def publish_batch(
        self, principal: Principal, items: Sequence[PublishInput]
    ) -> list[Published | RoomcastError]:
        """Publish many events; each item succeeds or fails on its own, in order.

        Raises:
            TooLarge: more items than ``max_batch_size``.
        """
        self._check_open()
        if len(items) > self.settings.max_batch_size:
            raise TooLarge(
                f"events: {len(items)} items; the limit is {self.settings.max_batch_size} per batch"
            )
        call = _PublishCall(principal, self._sender(principal, ""), False)
        refused: dict[int, RoomcastError] = {}
        drafts: list[Draft] = []
        for index, item in enumerate(items):
            try:
                drafts.append(self._prepare(call, item))
            except RoomcastError as error:
                refused[index] = error
        outcomes: list[Published | RoomcastError] = []
        for start in range(0, len(drafts), BATCH_CHUNK):
            if start:
                # Let stream writers drain between chunks, so one large batch
                # does not pile up in every subscriber's buffer at once.
                await asyncio.sleep(0)
            outcomes += await self.broker.publish_many(drafts[start : start + BATCH_CHUNK])
        published = iter(outcomes)
        self.metrics.counters.messages_in += len(drafts)
        # Refusals keep their places; the broker's answers fill the rest in order.
        return [refused[i] if i in refused else next(published) for i in range(len(items))]

    def _fan_out(self, publication: Publication) -> None:
        for recipient in self.hub.recipients(publication.room):
            recipient.deliver(publication)

    # -- subscribing ---------------------------------------------------------

    def _pattern_scope(self, principal: Principal, tenant_id: str) -> TenantId | object | None:
        if principal.tenant is not None:
            if tenant_id and tenant_id != principal.tenant:
                raise Forbidden(f"tenant_id: callers of tenant {principal.tenant!r} act only in it")
            return principal.tenant
        if tenant_id:
            return TenantId(parse_segment(tenant_id, field_name="tenant_id"))
        return ANY_TENANT

    async def subscribe(
        self,
        principal: Principal,
        recipient: Recipient,
        rooms: Sequence[str],
        since: Mapping[str, Position],
        tenant_id: str = "",
    ) -> Subscription:
        """Validate a subscription and start delivering to ``recipient``.

        Nothing is registered unless every room, pattern and position is
        valid and allowed.

        Raises:
            RoomcastError: naming the first room or field at fault.
        """
        self._check_open()
        if not rooms:
            raise InvalidArgument("rooms: at least one room or pattern is required")
        if len(rooms) > self.settings.max_subscribe_rooms:
            raise TooLarge(
                f"rooms: {len(rooms)} given; the limit is {self.settings.max_subscribe_rooms}"
            )
        subscription = Subscription(recipient)
        scope = self._pattern_scope(principal, tenant_id)

        def permits(room: Room) -> bool:
            return self.policy.covers(principal, room)

        for index, text in enumerate(rooms):
            where = f"rooms[{index}]"
            if is_pattern(text):
                pattern = parse_pattern(text, field_name=where)
                subscription.patterns.append(
                    PatternSubscription(pattern, scope, recipient, permits)  # type: ignore[arg-type]
                )
            else:
                resolved = self.policy.resolve(principal, text, tenant_id, field_name=where)
                self.policy.check(principal, resolved, Action.SUBSCRIBE)
                subscription.rooms[resolved.room.key] = resolved.room
        for name, position in since.items():
            resolved = self.policy.resolve(principal, name, tenant_id, field_name="since")
            covered = resolved.room.key in subscription.rooms or any(
                p.matches(resolved.room) for p in subscription.patterns
            )
            if not covered:
                raise InvalidArgument(f"since: room {name!r} is not among the rooms subscribed")
            subscription.resume.append((name, resolved, position))
        for room in subscription.rooms.values():
            if self.hub.add(room, recipient):
                await self.broker.listen(room.key)
        for pattern_subscription in subscription.patterns:
            if self.hub.add_pattern(pattern_subscription):
                await self.broker.listen_pattern(pattern_subscription.key)
        self.streams += 1
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        """End a subscription (idempotent)."""
        recipient = subscription.recipient
        for room in subscription.rooms.values():
            if self.hub.discard(room, recipient):
                await self.broker.unlisten(room.key)
        for pattern_subscription in subscription.patterns:
            if self.hub.discard_pattern(pattern_subscription):
                await self.broker.unlisten_pattern(pattern_subscription.key)
        if subscription.rooms or subscription.patterns:
            self.streams -= 1
        subscription.rooms.clear()
        subscription.patterns.clear()

    async def replay(self, resolved: ResolvedRoom, since: Position) -> Page[bytes]:
        """Events after ``since`` for a resuming subscriber, or why they are lost.

        A lost position replays nothing: the page is empty with
        ``recovered=False``, and the subscriber reloads the room's state.
        """
        retention = _retention(resolved)
        page = await self.broker.read(resolved.room, since, max(retention.size, 1), retention)
        if not page.recovered:
            return Page((), page.top, False, page.reason)
        return page

    # -- reading -------------------------------------------------------------

    async def history(
        self, principal: Principal, room: str, tenant_id: str, since: Position | None, limit: int
    ) -> Page[bytes]:
        """Stored events of a room for a caller who may subscribe to it."""
        resolved = self.policy.resolve(principal, room, tenant_id)
        self.policy.check(principal, resolved, Action.SUBSCRIBE)
        limit = MAX_HISTORY_PAGE if limit <= 0 else min(limit, MAX_HISTORY_PAGE)
        return await self.broker.read(resolved.room, since, limit, _retention(resolved))

    def members(self, principal: Principal, room: str, tenant_id: str) -> list[Member]:
        """A room's members, for a caller who may subscribe to it."""
        resolved = self.policy.resolve(principal, room, tenant_id)
        self.policy.check(principal, resolved, Action.SUBSCRIBE)
        return self.presence.members(resolved.room.key)

    def _listing_scope(self, principal: Principal, tenant_id: str) -> TenantId | None:
        if principal.tenant is None:
            if not (principal.is_super_admin or principal.is_service):
                raise Forbidden("listing rooms is for services and admins")
            return TenantId(parse_segment(tenant_id, field_name="tenant_id")) if tenant_id else None
        if not (principal.is_service or principal.has(Role.TENANT_ADMIN)):
            raise Forbidden("listing rooms is for services and admins")
        if tenant_id and tenant_id != principal.tenant:
            raise Forbidden(f"tenant_id: callers of tenant {principal.tenant!r} act only in it")
        return principal.tenant

    async def list_rooms(
        self, principal: Principal, prefix: str, tenant_id: str
    ) -> tuple[list[RoomSummary], bool]:
        """Rooms with history, members or subscribers, as the caller may see them.

        Returns:
            The rooms sorted by tenant and name, and whether the list was cut.
        """
        tenant = self._listing_scope(principal, tenant_id)
        every_tenant = principal.tenant is None and not tenant_id
        stats = {s.room.key: s for s in await self.broker.rooms()}
        rooms = {s.room.key: s.room for s in stats.values()}
        rooms.update((room.key, room) for room in self.hub.rooms())
        rooms.update((key, Room.from_key(key)) for key in self.presence.room_keys())
        visible = sorted(
            (
                room
                for room in rooms.values()
                if (every_tenant or room.tenant == tenant) and room.name.startswith(prefix)
            ),
            key=lambda r: (r.tenant or "", r.name),
        )
        summaries = []
        for room in visible[:MAX_LISTED_ROOMS]:
            stat = stats.get(room.key)
            summaries.append(
                RoomSummary(
                    room,
                    self.presence.member_count(room.key),
                    self.hub.subscriber_count(room),
                    stat.position if stat else Position(0, ""),
                    stat.history_size if stat else 0,
                )
            )
        return summaries, len(visible) > MAX_LISTED_ROOMS

    # -- membership ----------------------------------------------------------

    def _targets(
        self,
        principal: Principal,
        resolved: ResolvedRoom,
        tenant_id: str,
        user_id: str,
        connection_id: str,
    ) -> list[Member]:
        if not principal.is_service:
            raise Forbidden("JoinRoom and LeaveRoom are for services")
        self.policy.check(principal, resolved, Action.PUBLISH)
        # Whose connections: the room's tenant; for rooms of no tenant, the
        # tenant a platform caller names, else the caller's own.
        tenant = (
            resolved.room.tenant
            or (TenantId(parse_segment(tenant_id, field_name="tenant_id")) if tenant_id else None)
            or principal.tenant
        )
        if connection_id:
            member = self.presence.connection(connection_id)
            # A tenant's caller never learns of, or moves, another tenant's connections.
            if member is None or (
                (resolved.room.tenant is not None or principal.tenant is not None)
                and member.tenant != tenant
            ):
                raise NotFound(f"connection_id: {connection_id!r} is not connected")
            return [member]
        if not user_id:
            raise InvalidArgument("user_id or connection_id: one of them is required")
        parse_segment(user_id, field_name="user_id")
        found = (self.presence.connection(c) for c in self.presence.connections_of(tenant, user_id))
        return [member for member in found if member is not None]

    def join(
        self, principal: Principal, room: str, tenant_id: str, user_id: str, connection_id: str
    ) -> int:
        """Put a user's live connections into a room.

        Returns:
            How many connections joined.
        """
        resolved = self.policy.resolve(principal, room, tenant_id)
        targets = self._targets(principal, resolved, tenant_id, user_id, connection_id)
        now = time.time()
        return sum(self.presence.join(resolved.room.key, m, now) for m in targets)

    def leave(
        self, principal: Principal, room: str, tenant_id: str, user_id: str, connection_id: str
    ) -> int:
        """Take a user's live connections out of a room.

        Returns:
            How many connections left.
        """
        resolved = self.policy.resolve(principal, room, tenant_id)
        targets = self._targets(principal, resolved, tenant_id, user_id, connection_id)
        return sum(
            self.presence.leave(resolved.room.key, m.connection_id) is not None for m in targets
        )

    # -- metrics -------------------------------------------------------------

    def metrics_snapshot(self, principal: Principal) -> Snapshot:
        """The latest metrics sample, for platform-level callers.

        Raises:
            Forbidden: for callers of a tenant.
        """
        if principal.tenant is not None or not (principal.is_super_admin or principal.is_service):
            raise Forbidden(
                "metrics are for platform-level callers (super_admin, platform services)"
            )
        return self.metrics.latest or self._take_sample()

    def _take_sample(self) -> Snapshot:
        return self.metrics.sample(
            connections=self.presence.connection_count,
            subscriptions=self.streams,
            rooms=len(set(self.presence.room_keys()) | {r.key for r in self.hub.rooms()}),
        )

    async def _sample_metrics(self) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics_interval)
            self._take_sample()

    async def _sweep(self) -> None:
        sweep = getattr(self.broker, "sweep", None)
        while sweep is not None:
            await asyncio.sleep(SWEEP_INTERVAL)
            keep = {room.key for room in self.hub.rooms()} | set(self.presence.room_keys())
            sweep(time.time(), keep)

    def begin_drain(self) -> None:
        """Refuse new work from now on (shutdown has begun)."""
        self.draining = True

    def connections_by_tenant(self) -> Iterable[tuple[TenantId | None, int]]:
        """Live connections per tenant."""
        return self.presence.connections_by_tenant().items()
