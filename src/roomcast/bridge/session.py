"""One authenticated client: its frames in, the node's answers out.

A thin shell: each frame is parsed (``frames``), checked against the
connection's limits (``limits``), and handed to the node (``sessions``,
``node``); what comes back is queued on the connection. Refusals are
``error`` frames; only sustained abuse (more refusals than the connection's
allowance) closes the connection, with 4101.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from google.protobuf.struct_pb2 import Struct
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..auth import Principal
from ..errors import Abuse, InvalidArgument, LimitExceeded, RoomcastError, Unauthenticated
from ..node import Node
from ..rooms import TenantId
from ..sessions import CURSOR, TYPING
from .connection import Connection
from .frames import (
    Auth,
    ClientFrame,
    Cursor,
    FrameId,
    HistoryQuery,
    JoinRoom,
    LeaveRoom,
    Ping,
    PresenceQuery,
    SendMessage,
    Typing,
    decode,
    error_frame,
    frame_id,
    history_frame,
    members_json,
    parse,
)
from .limits import CursorThrottle, TokenBucket

__all__ = ["ClientSession", "CursorKey", "CursorUpdate", "close_reason"]

log = logging.getLogger(__name__)

# Cursor updates are coalesced per user and room, across the user's connections.
CursorKey = tuple[TenantId | None, str, str]
CursorUpdate = tuple["ClientSession", str, Mapping[str, Any]]
# RFC 6455 5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
MAX_CLOSE_REASON = 123


def close_reason(message: str) -> str:
    """``message`` cut to fit a close frame."""
    encoded = message.encode()
    if len(encoded) <= MAX_CLOSE_REASON:
        return message
    return encoded[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."


class ClientSession:
    """Reads one client's frames and acts on them.

    Args:
        node: the node.
        connection: the client's connection.
        principal: who the client is.
        cursors: the node's cursor throttle.
        later: runs a coroutine after a delay (seconds), for coalesced
            cursor updates.
    """

    def __init__(
        self,
        node: Node,
        connection: Connection,
        principal: Principal,
        cursors: CursorThrottle[CursorKey, CursorUpdate],
        later: Callable[[float, Callable[[], Coroutine[Any, Any, None]]], None],
    ) -> None:
        settings = node.settings
        now = time.monotonic()
        self.node = node
        self.connection = connection
        self.principal = principal
        self._cursors = cursors
        self._later = later
        self._rate = TokenBucket(settings.ws_rate_limit, settings.ws_rate_burst, now)
        self._allowance = TokenBucket(1.0, settings.ws_abuse_limit, now)

    async def run(self) -> None:
        """Act on frames until the client goes or the connection must close."""
        async for message in self.connection.websocket:
            if not await self.receive(message):
                return

    async def receive(self, message: str | bytes) -> bool:
        """Act on one frame.

        Returns:
            False when the connection was closed and reading must stop.
        """
        now = time.monotonic()
        id_: FrameId = None
        try:
            if not self._rate.take(now):
                self.node.metrics.counters.rate_limited += 1
                raise LimitExceeded(
                    f"more than {self.node.settings.ws_rate_limit:g} frames a second; slow down"
                )
            data = decode(message)
            id_ = frame_id(data)
            await self._act(parse(data))
        except RoomcastError as error:
            if error.close_code is not None:
                await self.close(error)
                return False
            self.connection.send(error_frame(error, id_))
            if not self._allowance.take(now):
                self.node.metrics.counters.abuse_closes += 1
                await self.close(Abuse("too many refused or malformed frames"))
                return False
        except ConnectionClosed:
            return False
        except Exception:
            reference = secrets.token_hex(4)
            log.exception("frame failed on connection %s (ref %s)", self.connection.id, reference)
            self.connection.send(
                error_frame(RoomcastError(f"internal error (ref {reference})"), id_)
            )
        return True

    def token_expiring(self, expires_at: float) -> None:
        """Warn the client that its token expires at ``expires_at`` (refresh with ``auth``)."""
        self.connection.send({"type": "token.expiring", "expires_at": int(expires_at)})

    async def close(self, error: RoomcastError, *, reader: bool = True) -> None:
        """Close the connection with the error's close code and message.

        What is queued for the client (the error frames that led here) goes
        out first.

        Args:
            error: why.
            reader: the caller is the task that reads the client's frames
                (not, say, a timer); nothing else reads them meanwhile.
        """
        self.connection.flush()
        self.connection.closing = True
        websocket = self.connection.websocket
        if not reader:
            await websocket.close(error.close_code or 1011, close_reason(error.message))
            return
        # Frames the client sent ahead would fill websockets' inbound queue,
        # which then stops reading the socket — and the client's answering
        # close frame would go unread until the close timeout. Discard them.
        discard = asyncio.create_task(_discard_incoming(websocket))
        try:
            await websocket.close(error.close_code or 1011, close_reason(error.message))
        finally:
            discard.cancel()

    async def _act(self, frame: ClientFrame) -> None:
        node, connection = self.node, self.connection
        sessions, cid = node.sessions, connection.id
        match frame:
            case JoinRoom(room, since, id_):
                connection.joined(await sessions.join(cid, room, since), id_)
            case LeaveRoom(room, id_):
                connection.left(await sessions.leave(cid, room), id_)
            case SendMessage(event, payload, rooms, id_):
                results = await sessions.send(cid, event, struct_payload(payload), rooms)
                connection.send(
                    {"type": "message_sent", "offsets": {n: r.offset for n, r in results}}, id_
                )
            case Typing(room, state, _):
                key = sessions.room(cid, room).room.key
                if state != (key in connection.typing):  # state changes only
                    await sessions.signal(cid, room, TYPING, {"state": state})
                    (connection.typing.add if state else connection.typing.discard)(key)
            case Cursor(room, position, _):
                await self._cursor(room, position)
            case PresenceQuery(room, id_):
                members = await node.members(self.principal, room, "")
                connection.send(
                    {"type": "presence", "room": room, "members": members_json(members)}, id_
                )
            case HistoryQuery(room, since, limit, id_):
                page = await node.history(self.principal, room, "", since, limit)
                connection.send(history_frame(room, page.items, page.top, page.recovered, id_))
            case Ping(id_):
                connection.send({"type": "pong"}, id_)
            case Auth(token, id_):
                self._refresh(token, id_)

    def _refresh(self, token: str, id_: FrameId) -> None:
        """A fresh token for the same identity extends the session."""
        try:
            principal = self.node.authenticate(token, remember=False)
        except Unauthenticated as error:
            # The old token still holds until it expires: say so, do not close.
            self.connection.send(error_frame(error, id_))
            return
        self.node.sessions.reauthenticate(self.connection.id, principal)
        self.principal = principal
        self.connection.send(
            {"type": "token.refreshed", "expires_at": int(principal.expires_at)}, id_
        )

    async def _cursor(self, room: str, position: Mapping[str, Any]) -> None:
        sessions, cid = self.node.sessions, self.connection.id
        key = sessions.check_signal(cid, room).key
        cursor_key = (self.principal.tenant, self.principal.subject, key)
        when = self._cursors.offer(cursor_key, (self, room, position), time.monotonic())
        if when is None:
            await sessions.signal(cid, room, CURSOR, {"position": position})
        elif when > 0:
            delay = max(0.0, when - time.monotonic())
            self._later(delay, lambda: self._send_due_cursor(cursor_key))

    async def _send_due_cursor(self, cursor_key: CursorKey) -> None:
        update = self._cursors.due(cursor_key, time.monotonic())
        if update is None:
            return
        session, room, position = update
        if session.connection.closing:
            return
        # It may have left the room (or gone) meanwhile: then the update is moot.
        with contextlib.suppress(RoomcastError, KeyError):
            await self.node.sessions.signal(
                session.connection.id, room, CURSOR, {"position": position}
            )


async def _discard_incoming(websocket: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in websocket:
            pass


def struct_payload(payload: Mapping[str, Any]) -> Struct:
    """A client's JSON object as a Struct.

    Raises:
        InvalidArgument: the object holds what a Struct cannot (it cannot, from JSON).
    """
    struct = Struct()
    try:
        struct.update(payload)
    except (ValueError, TypeError) as error:
        raise InvalidArgument("payload: must be a JSON object") from error
    return struct
