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
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..auth import Principal
from ..connections import Joined
from ..errors import Abuse, LimitExceeded, RoomcastError, Unauthenticated
from ..gate import check_json, encode_json
from ..history import Page
from ..node import Node
from ..presence import members_page
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
    member_size,
    missed_frame,
    parse,
    presence_frame,
    room_joined_frame,
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
            # Decoded first, so that even a refusal for speed echoes the
            # frame's id (decoding is bounded by ws_max_frame_bytes).
            data = decode(message)
            id_ = frame_id(data)
            if not self._rate.take(now):
                self.node.metrics.counters.rate_limited += 1
                raise LimitExceeded(
                    f"more than {self.node.settings.ws_rate_limit:g} frames a second; slow down"
                )
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
        except Exception as error:
            reference = self.node.fault(error, f"frame on connection {self.connection.id}")
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
                budget = await connection.reply_budget()
                await self._answer_join(await sessions.join(cid, room, since, budget), budget, id_)
            case LeaveRoom(room, id_):
                connection.left(await sessions.leave(cid, room), id_)
            case SendMessage(event, payload, rooms, id_):
                results = await sessions.send(cid, event, encode_json(payload), rooms)
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
            case PresenceQuery(room, page_token, id_):
                budget = await connection.reply_budget()
                members = await node.members(self.principal, room, "")
                listed, following = members_page(members, page_token, budget, member_size)
                connection.send(presence_frame(room, listed, following, id_))
            case HistoryQuery(room, since, limit, id_):
                budget = await connection.reply_budget()
                page = await node.history(self.principal, room, "", since, limit, budget)
                connection.send(history_frame(room, page, budget, id_))
            case Ping(id_):
                connection.send({"type": "pong"}, id_)
            case Auth(token, id_):
                self._refresh(token, id_)

    async def _answer_join(self, joined: Joined, budget: int, id_: FrameId) -> None:
        """``room_joined``, then the missed events that did not fit in it, then live events.

        Live events of the room are held until the missed ones are out, so
        the client sees the room's events in order and none twice: missed
        ones up to the room's position when it joined, live ones after.
        """
        connection, name, key = self.connection, joined.room.name, joined.room.key
        frame, sent = room_joined_frame(joined, name, budget, id_)
        connection.send(frame)
        page = Page(joined.missed[:sent], joined.position, True, more=frame["more"])
        try:
            while page.more and joined.resolved is not None:
                budget = await connection.reply_budget()
                try:
                    page = await self.node.replay_next(
                        self.principal, joined.resolved, page, joined.position, budget
                    )
                except RoomcastError as error:
                    if error.close_code is not None:
                        raise
                    # The rest cannot be read now (overloaded, say): the
                    # client must reload the room's state, as for a lost position.
                    page = Page((), joined.position, False, error.message)
                if not connection.holding(key):
                    break  # a backend's LeaveRoom meanwhile: room_left ended the join

                frame, sent = missed_frame(
                    name, page.items, page.more, page.recovered, page.reason, budget
                )
                connection.send(frame)
                page = Page(page.items[:sent], joined.position, True, more=frame["more"])
        finally:
            connection.release(key, joined.position.offset)

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
        # Through the gate now, not when a coalesced update goes out later:
        # a refusal must reach the client that sent it.
        check_json(position, field="position", levels=2)
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
