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
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .auth import Principal, TokenVerifier
from .brokers import Broker, Draft, Publication, Retention
from .cluster_presence import ClusterPresence
from .config import Settings
from .errors import (
    Forbidden,
    InvalidArgument,
    Overloaded,
    TooLarge,
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
from .ports import PublishInput, Recipient
from .presence import Member, Presence
from .publishing import Publisher, retention_of
from .reading import ReadsInFlight, event_offset, read_page
from .rooms import (
    Room,
    TenantId,
    is_pattern,
    parse_pattern,
    parse_segment,
)
from .security.watch import SecurityWatch
from .sessions import Sessions
from .tasks import Supervisor
from .v1.event_pb2 import Event
from .wire import EVENT_PAYLOAD, field_bytes

__all__ = [
    "MAX_HISTORY_PAGE",
    "Node",
    "PublishInput",
    "Recipient",
    "Subscription",
]

log = logging.getLogger(__name__)

MAX_HISTORY_PAGE = 1_000
SWEEP_INTERVAL = 30.0


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


_CONTROL_RETENTION = Retention(0, 1.0)


def _caller(principal: Principal) -> tuple[str | None, str]:
    """Whose reads in flight a principal's are: one user (or service) of one tenant."""
    return (principal.tenant, principal.subject)


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
        self.metrics = (Collector if settings.metrics else Idle)(settings.node_id)
        self.draining = False
        self.publisher = Publisher(settings, policy, broker, self.metrics, lambda: self.draining)
        # The publishing verbs are the publisher's, under the node's name.
        self.publish = self.publisher.publish
        self.publish_batch = self.publisher.publish_batch
        self.check_publish = self.publisher.check_publish
        self.signal = self.publisher.signal
        self.cluster_presence = ClusterPresence(self.presence, broker, settings.presence_ttl)
        self.room_members = self.cluster_presence.members
        self.share_presence = self.cluster_presence.share
        self.unshare_presence = self.cluster_presence.unshare
        self.sessions = Sessions(self)
        self.monitor = Monitor(self)
        self.operations = Operations(self)
        self.security = SecurityWatch(settings)
        self.supervisor = Supervisor()
        self.faults = Faults(log)
        self.guard = MemoryGuard(settings.memory_limit_bytes or default_limit())
        self.reads = ReadsInFlight(settings.max_reads_in_flight)
        # Set when the node closes: its background loops stop at the end of
        # a round even if a cancellation was lost. redis-py writes every
        # command under asyncio.wait_for, which on Python 3.11 swallows a
        # cancellation that arrives as the write completes.
        self.closing = False
        self.streams = 0

    async def start(self) -> None:
        """Connect the broker and start the background tasks."""
        await self.broker.start(self._fan_out)
        if self.settings.metrics:
            self.supervisor.spawn("monitor", self.monitor.run)
        if self.broker.shared is not None:
            self.supervisor.spawn(
                "presence", lambda: self.cluster_presence.keep_alive(lambda: self.closing)
            )
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

    @contextmanager
    def _counting_refusals(self) -> Iterator[None]:
        """Count in ``overloaded`` each refusal the block raises."""
        try:
            yield
        except Overloaded:
            self.metrics.counters.overloaded += 1
            raise

    def check_memory(self, what: str) -> None:
        """Refuse ``what`` (an expensive read) while the node is over its memory budget.

        Raises:
            Overloaded: counted in ``overloaded``.
        """
        with self._counting_refusals():
            self.guard.check(what)

    def admit_connection(self) -> None:
        """Refuse a new WebSocket connection while the node is over its memory budget.

        Raises:
            ServerBusy: close code 1013; counted in ``overloaded``.
        """
        with self._counting_refusals():
            self.guard.check_connection()

    @contextmanager
    def expensive_read(self, principal: Principal, what: str) -> Iterator[None]:
        """Run a read whose reply is paged (history, replay, presence) under both bounds.

        Raises:
            Overloaded: the node is over its memory budget, or the caller
                has too many reads in flight (counted in ``overloaded``).
        """
        caller = _caller(principal)
        with self._counting_refusals():
            self.guard.check(what)
            self.reads.begin(caller)
        try:
            yield
        finally:
            self.reads.end(caller)

    def authenticate(self, token: str, *, remember: bool = True) -> Principal:
        """The principal of a bearer token (see :meth:`TokenVerifier.verify`)."""
        return self.verifier.verify(token, remember=remember)

    # -- publishing ----------------------------------------------------------

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
        self.publisher.check_open()
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
        return await self.broker.read(resolved.room, None, 0, retention_of(resolved))

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
        retention = retention_of(resolved)
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
                self.broker, resolved.room, retention_of(resolved), since, limit, max_bytes
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
        self.publisher.check_open()
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
        body += field_bytes(EVENT_PAYLOAD, payload)
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
