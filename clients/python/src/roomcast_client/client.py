"""``RoomcastClient``: the calls of ``RealtimeService``, the platform's helper verbs, and the
operators' ``AdminService`` calls."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Final, TypeVar, cast

import betterproto
from grpclib.client import Channel

from roomcast_client import rooms, v1
from roomcast_client.errors import ClientClosed, RoomcastError, from_code, from_transport
from roomcast_client.handlers import EventHandler, EventSubscription, GapHandler
from roomcast_client.subscription import DEFAULT_RECONNECT, Reconnect, Subscription
from roomcast_client.tokens import TokenSource, bearer, tenant_of
from roomcast_client.values import Alerts, JSONValue, Position, Published, PublishItem, Tracked
from roomcast_client.wire import alert_from, publish_request, published_from, struct_to

__all__ = ["DEFAULT_TIMEOUT", "RoomcastClient", "parse_target"]

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds a unary call may take before it fails with ``DeadlineExceeded``."""

_Response = TypeVar("_Response")


def parse_target(target: str) -> tuple[str, int]:
    """Split ``"host:port"`` (or ``"[::1]:port"``) into host and port.

    Raises:
        ValueError: ``target`` has no port.
    """
    host, colon, port = target.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ValueError(f"target must be 'host:port', not {target!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


class RoomcastClient:
    """A connection to a roomcast node, authenticated with one token.

    Use it as an async context manager; it connects on the first call::

        async with RoomcastClient("localhost:50051", token=token) as client:
            await client.publish("global.lobby", "greeting", {"text": "hi"})

    Args:
        target: ``"host:port"`` of the node's gRPC port.
        token: A JWT, or a function that returns the current one.
        tls: ``True`` for TLS with the system's trust store, or an
            ``ssl.SSLContext``. roomcast itself speaks plaintext; use TLS to
            reach it through a proxy that terminates TLS.
        timeout: Seconds each unary call may take (``None``: no limit).
            Subscriptions have no timeout.
        reconnect: How subscriptions wait between attempts to resubscribe.
    """

    def __init__(
        self,
        target: str,
        token: TokenSource,
        *,
        tls: bool | ssl.SSLContext = False,
        timeout: float | None = DEFAULT_TIMEOUT,
        reconnect: Reconnect = DEFAULT_RECONNECT,
    ) -> None:
        host, port = parse_target(target)
        self.target = target
        self._token = token
        self._timeout = timeout
        self._reconnect = reconnect
        self._host, self._port, self._tls = host, port, tls
        self._channel = self._connect()
        self._realtime = v1.RealtimeServiceStub(self._channel)
        self._admin = v1.AdminServiceStub(self._channel)
        self._subscriptions: set[Subscription] = set()
        self._handlers: set[EventSubscription] = set()
        self._closed = False

    async def __aenter__(self) -> RoomcastClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every subscription and handler of this client, then disconnect."""
        self._closed = True
        for handle in list(self._handlers):
            await handle.stop()
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        self._channel.close()
        # The transport closes its socket on the loop's next turn; take that
        # turn here, so that the connection is gone when close() returns.
        await asyncio.sleep(0)

    # --- RealtimeService -------------------------------------------------

    async def publish(
        self,
        room: str,
        event: str,
        payload: Mapping[str, JSONValue] | None = None,
        *,
        tenant_id: str | None = None,
        idempotency_key: str | None = None,
        skip_history: bool = False,
    ) -> Published:
        """Publish one event to one room.

        Args:
            room: The room's name, for example ``"chat.lobby"`` (not a pattern).
            event: The event name, for example ``"message.posted"``.
            payload: Any JSON object, at most 64 KiB once encoded.
            tenant_id: The room's tenant, for platform-level callers and rooms
                whose name does not carry it.
            idempotency_key: A key repeated within 5 minutes for the same room
                publishes once; the repeat returns the first result with
                ``duplicate=True``.
            skip_history: Deliver to current subscribers only (offset 0).

        Returns:
            Where the event landed.

        Raises:
            RoomcastError: ``PermissionDenied``, ``InvalidArgument``,
                ``ResourceExhausted`` (payload too large), ``Unavailable``, ...
        """
        item = PublishItem(room, event, payload or {}, tenant_id, idempotency_key, skip_history)
        response = await self._call(self._realtime.publish, publish_request(item))
        return published_from(response)

    async def publish_batch(self, items: Iterable[PublishItem]) -> list[Published | RoomcastError]:
        """Publish many events in one call; each is checked and published on its own.

        Args:
            items: The events, at most 10,000.

        Returns:
            One result per item, in order: where it landed, or the exception a
            single ``publish`` of it would have raised (returned, not raised).

        Raises:
            RoomcastError: The whole call failed (token, batch size, server down).
        """
        request = v1.PublishBatchRequest(events=[publish_request(item) for item in items])
        response = await self._call(self._realtime.publish_batch, request)
        results: list[Published | RoomcastError] = []
        for result in response.results:
            _, value = betterproto.which_one_of(result, "result")
            if isinstance(value, v1.PublishError):
                results.append(from_code(value.code, value.message))
            elif isinstance(value, v1.PublishResponse):
                results.append(published_from(value))
            else:  # neither side of the oneof: a server that broke the contract
                results.append(from_code("INTERNAL", "batch item without a result"))
        return results

    def subscribe(
        self,
        rooms_or_patterns: str | Iterable[str],
        since: Mapping[str, Position] | None = None,
        *,
        tenant_id: str | None = None,
    ) -> Subscription:
        """Follow rooms and room patterns.

        The subscription starts when it is entered (``async with``), awaited
        ready, or iterated. It yields ``Event`` values and, where events were
        lost, ``Gap`` values. It resubscribes by itself after a broken stream,
        resuming each room from the last event seen.

        Args:
            rooms_or_patterns: Room names and patterns (``"chat.*"``,
                ``"tenant.acme.**"``), at most 128.
            since: Resume points: room name -> the last position already seen.
                Events after it are replayed first.
            tenant_id: The tenant whose rooms are meant, for platform-level callers.

        Returns:
            The subscription; close it with ``aclose()`` or ``async with``.
        """
        self._check_open()
        if isinstance(rooms_or_patterns, str):
            rooms_or_patterns = [rooms_or_patterns]
        # Each subscription has a connection of its own. HTTP/2 flow control
        # is also per connection: a subscription whose reader falls behind
        # stops acknowledging data, and on a shared connection that would
        # hold back the responses of every other call of this client.
        channel = self._connect()
        stub = v1.RealtimeServiceStub(channel)

        def open_stream(request: v1.SubscribeRequest) -> AsyncGenerator[v1.SubscribeResponse, None]:
            self._check_open()
            # The generated method is an async generator (typed as an
            # iterator there); the subscription closes it with aclose().
            stream = stub.subscribe(request, metadata=bearer(self._token))
            return cast(AsyncGenerator[v1.SubscribeResponse, None], stream)

        def closed(subscription: Subscription) -> None:
            channel.close()
            self._subscriptions.discard(subscription)

        subscription = Subscription(
            open_stream,
            list(rooms_or_patterns),
            since or {},
            tenant_id or "",
            reconnect=self._reconnect,
            own_tenant=tenant_of(self._token),
            on_close=closed,
        )
        self._subscriptions.add(subscription)
        return subscription

    async def join_room(
        self,
        room: str,
        *,
        user_id: str | None = None,
        connection_id: str | None = None,
        tenant_id: str | None = None,
    ) -> int:
        """Put a user's live connections (or one connection) into a room.

        Give exactly one of ``user_id`` and ``connection_id``. Only services
        may call it, for rooms they may publish to.

        Returns:
            How many connections joined (were not in the room yet).

        Raises:
            ValueError: Neither or both of ``user_id`` and ``connection_id``.
            RoomcastError: ``PermissionDenied``, ``NotFound`` (no such
                connection), ``InvalidArgument``, ...
        """
        target = _target(user_id, connection_id)
        request = v1.JoinRoomRequest(room=room, tenant_id=tenant_id or "", **target)
        return (await self._call(self._realtime.join_room, request)).connections

    async def leave_room(
        self,
        room: str,
        *,
        user_id: str | None = None,
        connection_id: str | None = None,
        tenant_id: str | None = None,
    ) -> int:
        """Take a user's live connections (or one connection) out of a room.

        Returns:
            How many connections left (were in the room).

        Raises:
            ValueError: Neither or both of ``user_id`` and ``connection_id``.
            RoomcastError: As for ``join_room``.
        """
        target = _target(user_id, connection_id)
        request = v1.LeaveRoomRequest(room=room, tenant_id=tenant_id or "", **target)
        return (await self._call(self._realtime.leave_room, request)).connections

    async def metrics(self, *, cluster: bool = False) -> v1.GetMetricsResponse:
        """A snapshot of the node's load and traffic (platform-level callers only).

        Args:
            cluster: Aggregate every node of the cluster (nodes sharing a
                broker) instead of answering for the node that takes the
                call. ``nodes`` of the answer lists the nodes it covers.

        Raises:
            RoomcastError: ``PermissionDenied`` for tenant callers, ...
        """
        request = v1.GetMetricsRequest(cluster=cluster)
        return await self._call(self._realtime.get_metrics, request)

    # --- The platform's helper verbs (rooms and events in rooms.py) --------

    async def send_user_notification(
        self,
        user_id: str,
        notification: Mapping[str, JSONValue],
        *,
        tenant_id: str,
        idempotency_key: str | None = None,
    ) -> Published:
        """Notify one user: event ``user.notification`` in ``user.{user_id}.notifications``.

        Args:
            user_id: The user (``sub``) to notify.
            notification: The notification, any JSON object.
            tenant_id: The user's tenant.
            idempotency_key: As for ``publish``.
        """
        return await self.publish(
            rooms.user_notifications(user_id),
            rooms.USER_NOTIFICATION,
            notification,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
        )

    async def send_to_platform_admins(
        self,
        event: str,
        data: Mapping[str, JSONValue],
        *,
        idempotency_key: str | None = None,
    ) -> Published:
        """Send ``event`` to the platform's administrators (room ``platform.admins``)."""
        return await self.publish(
            rooms.PLATFORM_ADMINS, event, data, idempotency_key=idempotency_key
        )

    async def send_tenant_data_update(
        self,
        tenant_id: str,
        data: Mapping[str, JSONValue],
        *,
        idempotency_key: str | None = None,
    ) -> Published:
        """Tell every member of a tenant that its data changed.

        Event ``tenant.data_update`` in ``tenant.{tenant_id}.notifications``.
        """
        return await self.publish(
            rooms.tenant_notifications(tenant_id),
            rooms.TENANT_DATA_UPDATE,
            data,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
        )

    async def send_security_alert(
        self,
        alert: Mapping[str, JSONValue],
        *,
        idempotency_key: str | None = None,
    ) -> Published:
        """Raise a security alert: event ``security.alert`` in ``platform.security``."""
        return await self.publish(
            rooms.PLATFORM_SECURITY, rooms.SECURITY_ALERT, alert, idempotency_key=idempotency_key
        )

    async def track_user_activity(
        self,
        user_id: str,
        tenant_id: str | None = None,
        *,
        action: str,
        session_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        details: Mapping[str, JSONValue] | None = None,
    ) -> Tracked:
        """Report what a user did: event ``user.activity`` in ``tenant.{tenant_id}.admins``.

        The server checks the report and publishes it itself (the tenant's
        admins see it; super admins may follow ``tenant.*.admins``). Only
        services may report: a tenant's services for their own tenant,
        platform services naming it.

        Args:
            user_id: The user (``sub``) who acted.
            tenant_id: The user's tenant. A tenant's service may leave it out.
            action: What they did, for example ``"login"`` or
                ``"document.open"`` (an event name: dot-separated segments of
                ``A-Z a-z 0-9 _ -``, at most 100 characters).
            session_id: The user's session (at most 128 characters).
            ip_address: Where from, as IPv4 or IPv6 text.
            user_agent: The user's browser or app (at most 512 characters).
            details: Anything else worth keeping, any JSON object.

        Returns:
            The id and offset of the ``user.activity`` event.

        Raises:
            RoomcastError: ``InvalidArgument`` naming the field at fault,
                ``PermissionDenied`` for callers that are not services or
                name another tenant, ...
        """
        request = v1.TrackActivityRequest(
            user_id=user_id,
            tenant_id=tenant_id or "",
            action=action,
            session_id=session_id or "",
            ip_address=ip_address or "",
            user_agent=user_agent or "",
        )
        if details is not None:
            request.details = struct_to(details)
        response = await self._call(self._admin.track_activity, request)
        return Tracked(response.id, response.offset)

    async def subscribe_to_events(
        self,
        pattern: str | Iterable[str],
        handler: EventHandler,
        *,
        since: Mapping[str, Position] | None = None,
        tenant_id: str | None = None,
        on_gap: GapHandler | None = None,
    ) -> EventSubscription:
        """Call ``handler`` for every event of the rooms ``pattern`` matches.

        Returns once the subscription is live, so events published after the
        call reach the handler. The handler runs in a background task, one
        event at a time; one that raises is logged and the next event is
        handled as usual. Events lost in a break are reported to ``on_gap``
        (by default, logged as warnings).

        Args:
            pattern: A room or pattern (or several), as for ``subscribe``.
            handler: An async function taking an ``Event``.
            since: As for ``subscribe``: resume points to replay from.
            tenant_id: As for ``subscribe``.
            on_gap: An async function taking a ``Gap``.

        Returns:
            The running handler; ``cancel()`` stops it.

        Raises:
            RoomcastError: The subscribe was refused or the server is unreachable.
        """
        subscription = self.subscribe(pattern, since, tenant_id=tenant_id)
        handle = EventSubscription(subscription, handler, on_gap, self._handlers.discard)
        try:
            await handle.start()
        except BaseException:
            await subscription.aclose()
            raise
        self._handlers.add(handle)
        return handle

    # --- AdminService: operating the platform --------------------------------

    async def alerts(self, *, tenant_id: str | None = None) -> Alerts:
        """The alerts firing now and the recent alert log.

        Platform-level callers see every alert (or one tenant's, naming it);
        a tenant's admins and services see their own tenant's only.

        Raises:
            RoomcastError: ``PermissionDenied`` for tenant users without the
                ``tenant_admin`` or ``service`` role, ...
        """
        request = v1.GetAlertsRequest(tenant_id=tenant_id or "")
        response = await self._call(self._admin.get_alerts, request)
        return Alerts(
            firing=tuple(alert_from(alert) for alert in response.firing),
            recent=tuple(alert_from(alert) for alert in response.recent),
        )

    async def clear_alerts(self, *, include_firing: bool = False) -> int:
        """Empty the alert log (platform-level callers only).

        Args:
            include_firing: Also forget the alerts firing now; a condition
                that still holds fires again at the node's next sample.

        Returns:
            How many alerts were removed.

        Raises:
            RoomcastError: ``PermissionDenied`` for callers of a tenant, ...
        """
        request = v1.ClearAlertsRequest(include_firing=include_firing)
        return (await self._call(self._admin.clear_alerts, request)).cleared

    async def disconnect_user(
        self,
        user_id: str,
        *,
        tenant_id: str | None = None,
        connection_id: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Close a user's live WebSocket connections with close code 4001.

        The browser client must get a new token before it reconnects. With
        a shared broker, the user's connections on every node are closed.

        Args:
            user_id: The user (``sub``).
            tenant_id: The user's tenant. A tenant's callers may leave it out;
                a platform-level caller leaving it out means platform users.
            connection_id: Only this connection of the user.
            reason: Sent to the browser in the close frame (at most 100 characters).

        Returns:
            How many connections the node that took the call closed.

        Raises:
            RoomcastError: ``PermissionDenied`` unless the caller is a service
                or admin of the user's tenant or platform-level,
                ``InvalidArgument`` for a malformed id or reason, ...
        """
        request = v1.DisconnectUserRequest(
            user_id=user_id,
            tenant_id=tenant_id or "",
            connection_id=connection_id or "",
            reason=reason or "",
        )
        return (await self._call(self._admin.disconnect_user, request)).connections

    # --- plumbing ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("the client is closed")

    async def _call(
        self, method: Callable[..., Awaitable[_Response]], request: betterproto.Message
    ) -> _Response:
        self._check_open()
        try:
            return await method(request, timeout=self._timeout, metadata=bearer(self._token))
        except Exception as error:  # grpclib, h2 and socket errors alike
            raise from_transport(error) from error

    def _connect(self) -> Channel:
        # grpclib connects on the first call, and again after a lost connection.
        return Channel(self._host, self._port, ssl=self._tls or None)


def _target(user_id: str | None, connection_id: str | None) -> dict[str, str]:
    if (user_id is None) == (connection_id is None):
        raise ValueError("give exactly one of user_id and connection_id")
    return {"user_id": user_id} if user_id is not None else {"connection_id": str(connection_id)}
