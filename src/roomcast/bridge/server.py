"""The WebSocket bridge: browsers in rooms, on the HTTP port.

Owns the websockets server and each connection's life: authenticate (token
in the URL, a cookie, or — preferred — the first frame), admit (connection
limits), register with the node's sessions (which joins the connection's own
rooms), confirm, then read frames until the client goes; on the way out,
leave every room. A token that expires during a session is announced ahead
(``token.expiring``) and, if not refreshed, ends the session with 4002.

On shutdown every connection is closed with 4200: clients reconnect at once
(to another node) and resume their rooms with ``since``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from ..auth import Principal
from ..dashboard import add_dashboard
from ..errors import (
    ConfigError,
    ConnectionLimit,
    RoomcastError,
    ServerBusy,
    TokenExpired,
    Unauthenticated,
    Unavailable,
)
from ..metrics.prometheus import CONTENT_TYPE, Exposition
from ..node import Node
from ..presence import ConnectionId
from ..security.addresses import IPAddress, parse_address
from .connection import Connection, Flusher
from .expiry import ExpiryWatch
from .frames import Auth, confirmed_frame, decode, parse
from .http import Page, Routes, token_from_request
from .limits import CursorThrottle
from .session import ClientSession, CursorKey, CursorUpdate, close_reason

__all__ = ["Bridge"]

log = logging.getLogger(__name__)

# 1013 "Try Again Later" would also fit; 4200 is roomcast's documented code.
RESTARTING = 4200
SLOW_CONSUMER = 4100
# Inbound messages websockets may buffer per connection before it stops
# reading the socket (each at most ws_max_frame_bytes).
MAX_INBOUND_QUEUE = 8


class Bridge:
    """The WebSocket bridge of one node.

    Args:
        node: the node.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.settings = node.settings
        self.routes = Routes()
        self.routes.add("/healthz", self._healthz)
        self.routes.add("/readyz", self._readyz)
        self.routes.add("/metrics", self._metrics)
        add_dashboard(self.routes)
        self.exposition = Exposition(node.metrics, node.monitor.gauges)
        self.flusher = Flusher(self._count_written)
        self.cursors: CursorThrottle[CursorKey, CursorUpdate] = CursorThrottle(
            self.settings.cursor_interval
        )
        self.security = node.security
        self._server: Server | None = None
        # Bound once: every connection's expiry watch shares it.
        self._expire_session = self._expire
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> int:
        """Listen on the HTTP port.

        Returns:
            The port (useful when the settings ask for port 0).

        Raises:
            ConfigError: the port cannot be bound, or the GeoIP database
                cannot be read.
        """
        settings = self.settings
        self.security.open()  # a configured GeoIP database must be readable
        try:
            self._server = await serve(
                self._handle,
                settings.host,
                settings.http_port,
                process_request=self.routes.process_request,
                # Frames are encoded once and shared by every connection;
                # per-connection compression would defeat that.
                compression=None,
                ping_interval=settings.ws_heartbeat,
                ping_timeout=settings.ws_heartbeat,
                max_size=settings.ws_max_frame_bytes,
                max_queue=MAX_INBOUND_QUEUE,
                server_header=None,
                reuse_port=settings.reuse_port,  # workers share the port
            )
        except OSError as error:
            raise ConfigError(
                f"cannot listen for HTTP on {settings.host}:{settings.http_port}: {error.strerror}"
            ) from error
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Close every connection with 4200, then stop listening."""
        if self._server is None:
            return
        self._server.close(code=RESTARTING, reason="server restarting; reconnect")
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.security.close()  # only WebSocket connections look places up

    # -- HTTP ------------------------------------------------------------------

    async def _healthz(self, _: object) -> Page:
        return Page(200, b"ok\n")

    async def _readyz(self, _: object) -> Page:
        if self.node.draining:
            return Page(503, b"draining\n")
        if not await self.node.broker.healthy():
            return Page(503, b"broker unreachable\n")
        return Page(200, b"ready\n")

    async def _metrics(self, request: Request) -> Page:
        token = self.settings.metrics_token
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return Page(401, b"/metrics needs 'Authorization: Bearer <metrics_token>'\n")
        return Page(200, self.exposition.render(), CONTENT_TYPE)

    # -- connections -------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        address = self._client_address(websocket)
        try:
            self.node.admit_connection()
            principal = await self._authenticate(websocket, address)
            if self.node.draining:
                raise Unavailable("server restarting; reconnect")
            self.node.sessions.admit(principal)
        except (Unauthenticated, ConnectionLimit, Unavailable, ServerBusy) as error:
            await websocket.close(error.close_code or 4001, close_reason(error.message))
            return
        except ConnectionClosed:
            return
        # Everything the handshake's headers were needed for (the token, the
        # client's address) is done: an idle connection need not hold them
        # (a browser's, cookies and user agent included, are 1-2 KiB).
        assert websocket.request is not None
        websocket.request.headers = Headers()
        connection = Connection(
            ConnectionId(secrets.token_urlsafe(12)),
            websocket,
            self.flusher,
            self.settings.ws_send_buffer_bytes,
            self._close,
            self.settings.ws_max_reply_bytes,
            self.settings.ws_drain_timeout,
        )
        session = ClientSession(self.node, connection, principal, self.cursors, self._later)
        watch: ExpiryWatch[ClientSession] | None = None
        try:
            await self._confirm(connection, principal)
            self.security.connected(self.node, principal, address)
            watch = ExpiryWatch(session, self.settings.token_expiry_notice, self._expire_session)
            await session.run()
        except ConnectionClosed:
            pass
        except RoomcastError as error:  # connect refused (a limit hit meanwhile)
            await websocket.close(error.close_code or 1011, close_reason(error.message))
        finally:
            connection.closing = True
            if watch is not None:
                watch.cancel()
            await self.node.sessions.disconnect(connection.id)

    async def _confirm(self, connection: Connection, principal: Principal) -> None:
        """Join the connection's own rooms and send ``connection.confirmed``.

        A method of its own so that what joining returned (pages, member
        lists) is dropped when it returns, not held for the session's life.
        """
        joined = await self.node.sessions.connect(connection, principal)
        connection.send(
            confirmed_frame(
                connection.id,
                principal.subject,
                principal.tenant,
                principal.roles,
                joined,
                self.settings.ws_heartbeat,
                principal.expires_at,
            )
        )
        for room in joined:
            connection.release(room.room.key, room.position.offset)

    def _client_address(self, websocket: ServerConnection) -> IPAddress | None:
        """The client's address: the peer's, or a trusted proxy's X-Forwarded-For."""
        assert websocket.request is not None
        remote = websocket.remote_address  # (host, port), or a 4-tuple for IPv6
        peer = parse_address(str(remote[0])) if remote else None
        forwarded = websocket.request.headers.get_all("X-Forwarded-For")
        return self.security.client_address(peer, forwarded)

    async def _authenticate(
        self, websocket: ServerConnection, address: IPAddress | None
    ) -> Principal:
        """The principal of the token in the request, else of the first frame.

        A failure is reported to the security watch with the client's address.

        Raises:
            Unauthenticated: no token in time, or one that does not verify.
        """
        token: str | None = None
        try:
            token = await self._token(websocket)
            return self.node.authenticate(token, remember=False)
        except Unauthenticated:
            self.security.failed(self.node, address, token)
            raise

    async def _token(self, websocket: ServerConnection) -> str:
        """The token in the request, else the one in the first frame.

        Raises:
            Unauthenticated: no auth frame in time, or another first frame.
        """
        assert websocket.request is not None
        token = token_from_request(websocket.request)
        if token is None:
            try:
                message = await asyncio.wait_for(websocket.recv(), self.settings.ws_auth_timeout)
            except TimeoutError as error:
                raise Unauthenticated(
                    f"no auth frame within {self.settings.ws_auth_timeout:g} seconds"
                ) from error
            try:
                frame = parse(decode(message))
            except RoomcastError as error:
                raise Unauthenticated(f"the first frame must be auth ({error.message})") from error
            if not isinstance(frame, Auth):
                raise Unauthenticated("the first frame must be auth")
            token = frame.token
        return token

    def _expire(self, session: ClientSession) -> None:
        """End a session whose token expired without a refresh (4002)."""
        expired = TokenExpired("token expired; reconnect with a fresh one")
        self._spawn(session.close(expired, reader=False))

    def _close(self, connection: Connection, code: int, reason: str) -> None:
        if code == SLOW_CONSUMER:
            self.node.metrics.counters.slow_consumers += 1
        log.info("closing connection %s with %d: %s", connection.id, code, reason)
        self._spawn(connection.websocket.close(code, close_reason(reason)))

    def _later(self, delay: float, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        asyncio.get_running_loop().call_later(delay, lambda: self._spawn(run()))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.node.fault(error, "bridge task")

    def _count_written(self, frames: int, accepted_ns: list[int]) -> None:
        metrics = self.node.metrics
        metrics.counters.messages_out += frames
        if accepted_ns:
            metrics.record_latencies(accepted_ns, time.time_ns())
