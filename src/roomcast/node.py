"""A roomcast node: the one place where a request becomes an effect.

Both shells (gRPC in ``rpc/``, WebSocket in ``bridge/``) call these methods
after authenticating; the node checks the room policy, hands events to the
broker, and fans delivered events out to its local recipients. No protocol
logic lives in the shells and none is written twice.

An event's path: ``prepare`` (validate, authorise, build the ``Event``) →
``Broker.publish`` (offset, history) → ``_fan_out`` (the hub's plan) →
``Recipient.deliver`` (a non-blocking append to a bounded buffer).

The operators' verbs (ListRooms, alerts, DisconnectUser, TrackActivity,
metrics) live beside it in :mod:`roomcast.operations`, as ``node.operations``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .auth import Principal, TokenVerifier
from .brokers import Broker, Draft, Outcome, Publication, Published, Retention, expand
from .config import Settings
from .errors import (
    BrokerError,
    Forbidden,
    InvalidArgument,
    Overloaded,
    RoomcastError,
    TooLarge,
    Unavailable,
)
from .faults import Faults
from .gate import encode_json
from .guard import MemoryGuard, default_limit, resident_bytes
from .history import Page, Position
from .hub import ANY_TENANT, Hub, PatternSubscription
from .metrics import Collector, Idle
from .monitor import Monitor
from .operations import CONTROL, DISCONNECT, Operations
from .policy import Action, Policy, ResolvedRoom
from .presence import ConnectionId, Member, Presence
from .reading import ReadsInFlight, event_offset, read_page
from .rooms import (
    Room,
    TenantId,
    is_pattern,
    parse_event_name,
    parse_pattern,
    parse_segment,
)
from .security.watch import SecurityWatch
from .sessions import Sessions
from .tasks import Supervisor
from .v1.event_pb2 import Event, Sender
from .wire import ONE_BYTE as _ONE_BYTE
from .wire import field_bytes, field_varint, len_tag, varint

__all__ = [
    "MAX_HISTORY_PAGE",
    "Node",
    "PublishInput",
    "Recipient",
    "Subscription",
]

log = logging.getLogger(__name__)

MAX_HISTORY_PAGE = 1_000
MAX_IDEMPOTENCY_KEY = 128
PRESENCE_CHUNK = 1_000
SWEEP_INTERVAL = 30.0
# Event fields (proto/roomcast/v1/event.proto) framed by _drafts.
EVENT_TIME = 7
_EVENT_PAYLOAD = 4
_ID_TAG, _PAYLOAD_TAG = len_tag(1), len_tag(_EVENT_PAYLOAD)
BATCH_CHUNK = 256


class Recipient(Hashable, Protocol):
    """Something on this node that receives events: a stream, a connection."""

    def deliver(self, publications: Sequence[Publication]) -> None:
        """Take events of one room, in offset order.

        Must not block; overflow is the recipient's to handle.
        """


class PublishInput(Protocol):
    """One publish as a shell received it.

    ``payload`` is the encoded ``Struct`` the gate (:mod:`roomcast.gate`)
    produced or checked: the gRPC shell reads requests through it
    (:mod:`roomcast.rpc.payloads`, whose views of ``PublishRequest`` have
    exactly these attributes), every other path encodes JSON with
    :func:`~roomcast.gate.encode_json`. It is embedded in the event as it is.
    """

    @property
    def room(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
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
class _Route:
    """Where one kind of publish goes, resolved, authorised and half encoded.

    Attributes:
        room: the room, placed in its tenant.
        retention: the room's history limits.
        head: the encoded ``Event`` fields that are the same for every event
            of this route (room, event name, sender, tenant).
    """

    room: Room
    retention: Retention
    head: bytes


# Routes are cached per (principal, connection, membership, room, tenant,
# event): publishers send the same few kinds of event over and over, and
# resolving, authorising and encoding the head once per kind keeps the
# per-event cost to the payload. Past this many the cache starts over.
MAX_CACHED_ROUTES = 4_096
_RouteKey = tuple[Principal, str, bool, str, str, str]


_CONTROL_RETENTION = Retention(0, 1.0)


def _time_field(accepted_ns: int) -> bytes:
    seconds, nanos = divmod(accepted_ns, 1_000_000_000)
    return field_bytes(EVENT_TIME, field_varint(1, seconds) + field_varint(2, nanos))


def _caller(principal: Principal) -> tuple[str | None, str]:
    """Whose reads in flight a principal's are: one user (or service) of one tenant."""
    return (principal.tenant, principal.subject)


def _signal_field(data: Mapping[str, Any]) -> str:
    """What a refusal of a signal's data names: its one field (``position``), else payload."""
    return next(iter(data)) if len(data) == 1 else "payload"


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
        self.sessions = Sessions(self)
        self.monitor = Monitor(self)
        self.operations = Operations(self)
        self.security = SecurityWatch(settings)
        self.metrics = (Collector if settings.metrics else Idle)(settings.node_id)
        self.supervisor = Supervisor()
        self.faults = Faults(log)
        self.guard = MemoryGuard(settings.memory_limit_bytes or default_limit())
        self.reads = ReadsInFlight(settings.max_reads_in_flight)
        self.draining = False
        # Set when the node closes: its background loops stop at the end of
        # a round even if a cancellation was lost. redis-py writes every
        # command under asyncio.wait_for, which on Python 3.11 swallows a
        # cancellation that arrives as the write completes.
        self.closing = False
        self.streams = 0
        # Event ids: the node's random prefix and a counter in hex.
        self._id_format = f"{secrets.token_hex(4)}-%x"
        self._last_id = 0
        self._routes: dict[_RouteKey, _Route] = {}
        self._max_payload = settings.max_payload_bytes

    async def start(self) -> None:
        """Connect the broker and start the background tasks."""
        await self.broker.start(self._fan_out)
        if self.settings.metrics:
            self.supervisor.spawn("monitor", self.monitor.run)
        if self.broker.shared is not None:
            self.supervisor.spawn("presence", self._refresh_presence)
            await self.broker.listen(CONTROL.key)
        self.supervisor.spawn("sweep", self._sweep)
        self.supervisor.spawn("memory", self._watch_memory)

    async def close(self) -> None:
        """Stop the background tasks and the broker."""
        self.closing = True
        await self.supervisor.close()
        await self.broker.close()

    def fault(self, error: BaseException, where: str) -> str:
        """Count and log an unexpected error (rate-limited); the reference for the client."""
        self.metrics.counters.internal_errors += 1
        return self.faults.record(error, where)

    def check_memory(self, what: str) -> None:
        """Refuse ``what`` (an expensive read) while the node is over its memory budget.

        Raises:
            Overloaded: counted in ``overloaded``.
        """
        try:
            self.guard.check(what)
        except Overloaded:
            self.metrics.counters.overloaded += 1
            raise

    def admit_connection(self) -> None:
        """Refuse a new WebSocket connection while the node is over its memory budget.

        Raises:
            ServerBusy: close code 1013; counted in ``overloaded``.
        """
        try:
            self.guard.check_connection()
        except Overloaded:
            self.metrics.counters.overloaded += 1
            raise

    @contextmanager
    def expensive_read(self, principal: Principal, what: str) -> Iterator[None]:
        """Run a read whose reply is paged (history, replay, presence) under both bounds.

        Raises:
            Overloaded: the node is over its memory budget, or the caller
                has too many reads in flight (counted in ``overloaded``).
        """
        self.check_memory(what)
        caller = _caller(principal)
        try:
            self.reads.begin(caller)
        except Overloaded:
            self.metrics.counters.overloaded += 1
            raise
        try:
            yield
        finally:
            self.reads.end(caller)

    def authenticate(self, token: str, *, remember: bool = True) -> Principal:
        """The principal of a bearer token (see :meth:`TokenVerifier.verify`)."""
        return self.verifier.verify(token, remember=remember)

    # -- publishing ----------------------------------------------------------

    def _route(
        self,
        principal: Principal,
        connection_id: str,
        is_member: bool,
        room: str,
        tenant_id: str,
        event: str,
    ) -> _Route:
        """Resolve, authorise and half-encode a kind of publish (cached).

        Raises:
            RoomcastError: the room, tenant or event name is bad, or the
                policy refuses.
        """
        key = (principal, connection_id, is_member, room, tenant_id, event)
        route = self._routes.get(key)
        if route is not None:
            return route
        resolved = self.policy.resolve(principal, room, tenant_id)
        self.policy.check(principal, resolved, Action.PUBLISH, is_member=is_member)
        sender = Sender(
            user_id=principal.subject,
            tenant_id=principal.tenant or "",
            connection_id=connection_id,
            service=principal.subject if principal.is_service and not connection_id else "",
        )
        head = Event(
            room=resolved.room.name,
            event=parse_event_name(event),
            sender=sender,
            tenant_id=resolved.room.tenant or "",
        ).SerializeToString()
        if len(self._routes) >= MAX_CACHED_ROUTES:
            self._routes.clear()
        route = self._routes[key] = _Route(resolved.room, _retention(resolved), head)
        return route

    def _drafts(
        self,
        principal: Principal,
        items: Sequence[PublishInput],
        accepted_ns: int,
        *,
        connection_id: str = "",
        is_member: bool = False,
        refused: Mapping[int, RoomcastError] | None = None,
    ) -> tuple[list[Draft], dict[int, RoomcastError]]:
        """Encode events (everything but their positions, which the broker adds).

        One loop for a batch's items, with what it reads per item bound to
        locals: per event this is most of a batch's Python work.

        Args:
            refused: items the gate refused already, by index: they are
                skipped, and reported with the others refused here.

        Returns:
            The drafts in order, and the refused items by index.
        """
        time_field = _time_field(accepted_ns)
        max_payload = self._max_payload
        id_format = self._id_format
        number = self._last_id
        # The call's own routes, by what varies between its items.
        routes: dict[tuple[str, str, str], _Route] = {}
        drafts: list[Draft] = []
        gated = refused or {}
        refusals: dict[int, RoomcastError] = {}
        for index, item in enumerate(items):
            if gated and index in gated:
                refusals[index] = gated[index]
                continue
            try:
                where = (item.room, item.tenant_id, item.event)
                route = routes.get(where)
                if route is None:
                    route = routes[where] = self._route(principal, connection_id, is_member, *where)
                payload = item.payload
                if len(payload) > max_payload:
                    raise TooLarge(
                        f"payload: {len(payload)} bytes encoded; the limit is {max_payload}"
                    )
                idempotency_key = item.idempotency_key
                if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
                    raise InvalidArgument(
                        f"idempotency_key: longer than {MAX_IDEMPOTENCY_KEY} characters"
                    )
            except RoomcastError as error:
                refusals[index] = error
                continue
            number += 1
            event_id = id_format % number
            size = len(payload)
            body = b"".join(
                (
                    route.head,
                    _PAYLOAD_TAG,
                    _ONE_BYTE[size] if size < 0x80 else varint(size),
                    payload,
                    _ID_TAG,
                    _ONE_BYTE[len(event_id)],  # ASCII, under 30 characters
                    event_id.encode(),
                    time_field,
                )
            )
            drafts.append(
                Draft(
                    route.room,
                    event_id,
                    body,
                    accepted_ns,
                    route.retention,
                    item.skip_history,
                    idempotency_key,
                )
            )
        self._last_id = number
        return drafts, refusals

    def _next_id(self) -> str:
        self._last_id += 1
        return self._id_format % self._last_id

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
        drafts, refused = self._drafts(
            principal, (item,), time.time_ns(), connection_id=connection_id, is_member=is_member
        )
        if refused:
            raise refused[0]
        started = time.perf_counter()
        result = await self.broker.publish(drafts[0])
        self.metrics.record_broker_publish(time.perf_counter() - started)
        self.metrics.counters.messages_in += 1
        return result

    def check_publish(self, principal: Principal, item: PublishInput, connection_id: str) -> None:
        """Raise what publishing ``item`` from a connection that joined its room would.

        Raises:
            RoomcastError: the room or event name is bad, or the policy refuses.
        """
        self._route(principal, connection_id, True, item.room, item.tenant_id, item.event)

    async def signal(
        self,
        resolved: ResolvedRoom,
        principal: Principal,
        connection_id: str,
        kind: str,
        data: Mapping[str, Any],
    ) -> None:
        """Send a signal (presence, typing, cursor) to a room's WebSocket members.

        Signals travel like events but are never stored and never reach
        Subscribe streams; the caller has checked the policy. Their data
        passes the gate like any payload.

        Raises:
            InvalidArgument: ``data`` does not pass the gate (a cursor
                position nested too deep, say).
        """
        payload = encode_json(data, field=_signal_field(data))
        sender = Sender(
            user_id=principal.subject, tenant_id=principal.tenant or "", connection_id=connection_id
        )
        room = resolved.room
        accepted_ns = time.time_ns()
        body = b"".join(
            (
                Event(
                    room=room.name,
                    event=kind,
                    sender=sender,
                    tenant_id=room.tenant or "",
                    id=self._next_id(),
                ).SerializeToString(),
                field_bytes(_EVENT_PAYLOAD, payload),
                _time_field(accepted_ns),
            )
        )
        await self.broker.publish(
            Draft(room, "", body, accepted_ns, _retention(resolved), skip_history=True, signal=True)
        )

    async def publish_batch(
        self,
        principal: Principal,
        items: Sequence[PublishInput],
        refused: Mapping[int, RoomcastError] | None = None,
    ) -> list[Outcome]:
        """Publish many events; each item succeeds or fails on its own, in order.

        Args:
            principal: the caller.
            items: the events.
            refused: items the gate refused already, by index (their
                refusals take their places in the outcomes).

        Returns:
            One outcome per item, except that a :class:`PublishedRun`
            answers for as many consecutive items as it has ids.

        Raises:
            TooLarge: more items than ``max_batch_size``.
        """
        self._check_open()
        if len(items) > self.settings.max_batch_size:
            raise TooLarge(
                f"events: {len(items)} items; the limit is {self.settings.max_batch_size} per batch"
            )
        # Every event of a call is accepted at the call's moment.
        drafts, refusals = self._drafts(principal, items, time.time_ns(), refused=refused)
        outcomes: list[Outcome] = []
        for start in range(0, len(drafts), BATCH_CHUNK):
            if start:
                # Let stream writers drain between chunks, so one large batch
                # does not pile up in every subscriber's buffer at once.
                await asyncio.sleep(0)
            started = time.perf_counter()
            outcomes += await self.broker.publish_many(drafts[start : start + BATCH_CHUNK])
            self.metrics.record_broker_publish(time.perf_counter() - started)
        self.metrics.counters.messages_in += len(drafts)
        if not refusals:
            return outcomes
        # Refusals keep their places; the broker's answers fill the rest in order.
        published = iter(expand(outcomes))
        return [refusals[i] if i in refusals else next(published) for i in range(len(items))]

    def _fan_out(self, publications: Sequence[Publication]) -> None:
        """Hand delivered events to local recipients, one room's run at a time.

        A burst from the broker may mix rooms, so the nodes' commands are
        picked out wherever they are in it.
        """
        recipients = self.hub.recipients
        count = len(publications)
        start = 0
        while start < count:
            room = publications[start].room
            end = start + 1
            while end < count and publications[end].room.key == room.key:
                end += 1
            run = publications if end - start == count else publications[start:end]
            if room.key == CONTROL.key:
                self._obey(run)
            else:
                for recipient in recipients(room):
                    try:
                        recipient.deliver(run)
                    except Exception as error:
                        # A bug in one recipient must not cost the others
                        # their events, nor the publisher its answer: the
                        # event is stored already.
                        self.fault(error, f"delivery to {recipient!r} in {room.name}")
            start = end

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

    async def position(self, resolved: ResolvedRoom) -> Page[bytes]:
        """The newest position of a room (an empty page)."""
        return await self.broker.read(resolved.room, None, 0, _retention(resolved))

    async def replay(
        self,
        principal: Principal,
        resolved: ResolvedRoom,
        since: Position,
        max_bytes: int,
        limit: int = 0,
    ) -> Page[bytes]:
        """Events after ``since`` for a resuming subscriber, or why they are lost.

        A lost position replays nothing: the page is empty with
        ``recovered=False``, and the subscriber reloads the room's state.
        A page holds about ``max_bytes`` (at least one event); when ``more``
        is set, the caller replays on from its last event.

        Args:
            principal: who resumes (its reads in flight are counted).
            resolved: the room.
            since: the last position the subscriber saw.
            max_bytes: the page's budget.
            limit: events at most (0: as many as the room keeps).

        Raises:
            Overloaded: the node is over its memory budget, or the caller
                has too many reads in flight.
        """
        retention = _retention(resolved)
        with self.expensive_read(principal, "replay"):
            page = await read_page(
                self.broker,
                resolved.room,
                retention,
                since,
                limit or max(retention.size, 1),
                max_bytes,
            )
        if not page.recovered:
            return Page((), page.top, False, page.reason)
        return page

    async def replay_next(
        self,
        principal: Principal,
        resolved: ResolvedRoom,
        previous: Page[bytes],
        until: Position,
        max_bytes: int,
    ) -> Page[bytes]:
        """The replay's page after ``previous`` (whose ``more`` was set), up to ``until``.

        ``until`` is the room's position when the replay began: what came
        after it reaches the subscriber live. A page with ``recovered``
        false means events were lost between two pages (the history moved
        on); the subscriber reloads the room's state.
        """
        last = event_offset(previous.items[-1])
        if last >= until.offset:
            return Page((), until, True)
        return await self.replay(
            principal, resolved, Position(last, until.epoch), max_bytes, until.offset - last
        )

    # -- reading -------------------------------------------------------------

    async def history(
        self,
        principal: Principal,
        room: str,
        tenant_id: str,
        since: Position | None,
        limit: int,
        max_bytes: int,
    ) -> Page[bytes]:
        """Stored events of a room for a caller who may subscribe to it.

        Args:
            principal: the caller.
            room: the room's name.
            tenant_id: the tenant a platform-level caller names.
            since: the position to read after (None: the oldest held).
            limit: events at most (0 or over 1,000: 1,000).
            max_bytes: the page's budget (encoded events; at least one).

        Raises:
            Overloaded: the node is over its memory budget, or the caller
                has too many reads in flight.
        """
        resolved = self.policy.resolve(principal, room, tenant_id)
        self.policy.check(principal, resolved, Action.SUBSCRIBE)
        limit = MAX_HISTORY_PAGE if limit <= 0 else min(limit, MAX_HISTORY_PAGE)
        with self.expensive_read(principal, "history"):
            return await read_page(
                self.broker, resolved.room, _retention(resolved), since, limit, max_bytes
            )

    async def members(self, principal: Principal, room: str, tenant_id: str) -> list[Member]:
        """A room's members on every node, for a caller who may subscribe to it.

        Raises:
            Overloaded: the node is over its memory budget, or the caller
                has too many reads in flight.
        """
        resolved = self.policy.resolve(principal, room, tenant_id)
        self.policy.check(principal, resolved, Action.SUBSCRIBE)
        with self.expensive_read(principal, "presence"):
            return await self.room_members(resolved.room.key)

    # -- presence shared with other nodes ---------------------------------------

    async def room_members(self, room_key: str) -> list[Member]:
        """A room's members: on every node with a shared broker, else this node's.

        While the shared state cannot be read (the broker is down), this
        node's own members are the answer.
        """
        shared = self.broker.shared
        if shared is not None:
            try:
                return await shared.presence_members(room_key)
            except BrokerError as error:
                log.info("presence of %s from this node only: %s", room_key, error.message)
        return self.presence.members(room_key)

    async def share_presence(self, room_key: str, connection_id: ConnectionId) -> None:
        """Tell the other nodes a local connection is in a room (best effort)."""
        shared, member = self.broker.shared, self.presence.member(room_key, connection_id)
        if shared is not None and member is not None:
            try:
                await shared.presence_join(room_key, member)
            except BrokerError as error:  # the next refresh writes it again
                log.info("presence join of %s not shared yet: %s", room_key, error.message)

    async def unshare_presence(self, room_key: str, connection_id: ConnectionId) -> None:
        """Tell the other nodes a local connection left a room (best effort)."""
        if self.broker.shared is not None:
            try:
                await self.broker.shared.presence_leave(room_key, connection_id)
            except BrokerError as error:  # the entry expires by itself
                log.info("presence leave of %s not shared: %s", room_key, error.message)

    async def _refresh_presence(self) -> None:
        """Keep this node's presence entries alive in the shared state."""
        shared = self.broker.shared
        interval = self.settings.presence_ttl / 3
        while shared is not None and not self.closing:
            await asyncio.sleep(interval)
            entries = self.presence.entries()
            for start in range(0, len(entries), PRESENCE_CHUNK):
                try:
                    await shared.presence_refresh(entries[start : start + PRESENCE_CHUNK])
                except BrokerError as error:  # retried at the next round
                    log.info("presence refresh failed: %s", error.message)
                    break

    # -- membership (JoinRoom / LeaveRoom) -------------------------------------

    def _placement(
        self, principal: Principal, room: str, tenant_id: str
    ) -> tuple[ResolvedRoom, TenantId | None]:
        """The room a backend moves connections into or out of, and whose connections."""
        if not principal.is_service:
            raise Forbidden("JoinRoom and LeaveRoom are for services")
        resolved = self.policy.resolve(principal, room, tenant_id)
        self.policy.check(principal, resolved, Action.PUBLISH)
        # Whose connections: the room's tenant; for rooms of no tenant, the
        # tenant a platform caller names, else the caller's own.
        tenant = (
            resolved.room.tenant
            or (TenantId(parse_segment(tenant_id, field_name="tenant_id")) if tenant_id else None)
            or principal.tenant
        )
        return resolved, tenant

    async def join(
        self, principal: Principal, room: str, tenant_id: str, user_id: str, connection_id: str
    ) -> int:
        """Put a user's live connections (or one connection) into a room.

        The backend decides: the connections need no subscribe right of their
        own, but a tenant's room only ever takes that tenant's connections.

        Returns:
            How many connections joined.
        """
        self._check_open()
        resolved, tenant = self._placement(principal, room, tenant_id)
        targets = self.sessions.targets(resolved, tenant, user_id, connection_id)
        return sum([await self.sessions.place(target, resolved) for target in targets])

    async def leave(
        self, principal: Principal, room: str, tenant_id: str, user_id: str, connection_id: str
    ) -> int:
        """Take a user's live connections (or one connection) out of a room.

        Returns:
            How many connections left.
        """
        resolved, tenant = self._placement(principal, room, tenant_id)
        targets = self.sessions.targets(resolved, tenant, user_id, connection_id)
        return sum([await self.sessions.remove(target, resolved) for target in targets])

    async def command(self, kind: str, data: Mapping[str, Any]) -> None:
        """Tell every other node to do something (through the control room)."""
        payload = encode_json({**data, "origin": self.settings.node_id})
        accepted_ns = time.time_ns()
        body = Event(room=CONTROL.name, event=kind).SerializeToString()
        body += field_bytes(_EVENT_PAYLOAD, payload)
        draft = Draft(CONTROL, "", body, accepted_ns, _CONTROL_RETENTION, skip_history=True)
        await self.broker.publish(draft)

    def _obey(self, publications: Sequence[Publication]) -> None:
        """Carry out other nodes' commands."""
        for publication in publications:
            event = Event.FromString(publication.data)
            command = {key: str(value) for key, value in event.payload.items()}
            if command.get("origin") == self.settings.node_id:
                continue  # done already, where it was asked
            if event.event == DISCONNECT:
                tenant = command.get("tenant_id", "")
                self.sessions.disconnect_user(
                    TenantId(tenant) if tenant else None,
                    command.get("user_id", ""),
                    command.get("connection_id", ""),
                    command.get("reason", ""),
                )

    async def _watch_memory(self) -> None:
        """Sample the resident size for the memory guard, until the node closes."""
        guard = self.guard
        while not self.closing:
            if guard.observe(resident_bytes()):
                log.warning(
                    "memory %s budget: %d MiB resident, ceiling %d MiB%s",
                    "over" if guard.over else "back under",
                    guard.resident >> 20,
                    guard.limit >> 20,
                    "; refusing new connections and expensive reads" if guard.over else "",
                )
            await asyncio.sleep(self.settings.memory_check_interval)

    async def _sweep(self) -> None:
        sweep = getattr(self.broker, "sweep", None)
        while sweep is not None and not self.closing:
            await asyncio.sleep(SWEEP_INTERVAL)
            keep = {room.key for room in self.hub.rooms()} | set(self.presence.room_keys())
            sweep(time.time(), keep)

    def begin_drain(self) -> None:
        """Refuse new work from now on (shutdown has begun)."""
        self.draining = True
