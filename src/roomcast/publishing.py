"""Publishing: a shell's publish becomes drafts for the broker, and signals go out.

The node's publishing half (the node is a façade over it): each kind of
publish (principal, connection, room, tenant, event name) is resolved,
authorised and half encoded once (a *route*, cached); then one loop turns a
call's items into :class:`~roomcast.brokers.Draft` s — the route's encoded
head, the payload as the gate left it, an id, the time — and the broker
gives them offsets. Delivery of what the broker publishes is the node's
(``Node._fan_out``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .auth import Principal
from .brokers import Broker, Draft, Outcome, Published, Retention, expand
from .config import Settings
from .errors import InvalidArgument, RoomcastError, TooLarge, Unavailable
from .gate import encode_json
from .metrics import Collector
from .policy import Action, Policy, ResolvedRoom
from .ports import PublishInput
from .rooms import Room, parse_event_name
from .v1.event_pb2 import Event, Sender
from .wire import EVENT_ID, EVENT_PAYLOAD, field_bytes, len_tag, time_field, varint
from .wire import ONE_BYTE as _ONE_BYTE

__all__ = [
    "BATCH_CHUNK",
    "MAX_IDEMPOTENCY_KEY",
    "Publisher",
    "retention_of",
]

MAX_IDEMPOTENCY_KEY = 128

_ID_TAG, _PAYLOAD_TAG = len_tag(EVENT_ID), len_tag(EVENT_PAYLOAD)
BATCH_CHUNK = 256


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


def _signal_field(data: Mapping[str, Any]) -> str:
    """What a refusal of a signal's data names: its one field (``position``), else payload."""
    return next(iter(data)) if len(data) == 1 else "payload"


def retention_of(resolved: ResolvedRoom) -> Retention:
    """A room's history limits, from its rule."""
    return Retention(resolved.rule.history_size, resolved.rule.history_ttl)


class Publisher:
    """Publishes a node's events, and its signals, through the broker.

    Args:
        settings: the node's settings (payload and batch limits).
        policy: the room policy.
        broker: where events get offsets and history.
        metrics: the node's counters.
        draining: whether the node drains (then publishes are refused).
    """

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        broker: Broker,
        metrics: Collector,
        draining: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.broker = broker
        self.metrics = metrics
        self._draining = draining
        # Event ids: the node's random prefix and a counter in hex.
        self._id_format = f"{secrets.token_hex(4)}-%x"
        self._last_id = 0
        self._routes: dict[_RouteKey, _Route] = {}
        self._max_payload = settings.max_payload_bytes

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
        route = self._routes[key] = _Route(resolved.room, retention_of(resolved), head)
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
        time_bytes = time_field(accepted_ns)
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
                    time_bytes,
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

    def check_open(self) -> None:
        """Refuse new publishes once the node drains.

        Raises:
            Unavailable: shutdown has begun.
        """
        if self._draining():
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
        self.check_open()
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
                field_bytes(EVENT_PAYLOAD, payload),
                time_field(accepted_ns),
            )
        )
        await self.broker.publish(
            Draft(
                room, "", body, accepted_ns, retention_of(resolved), skip_history=True, signal=True
            )
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
        self.check_open()
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
