"""WebSocket clients of a test server's bridge, reading frames in the background.

Waits are multiples of :data:`support.waiting.UNIT`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from support.server import ServerProcess
from support.waiting import UNIT

__all__ = ["Open", "WsClient", "confirmed", "join", "websockets"]


class WsClient:
    """A real WebSocket client of the bridge; frames are read in the background.

    Every frame the server sends is kept in ``frames`` in arrival order;
    :meth:`next` waits for the next one of a type, and :meth:`request` sends a
    frame with an id and waits for the reply that echoes it.
    """

    def __init__(self, websocket: Any) -> None:
        self.websocket = websocket
        self.frames: list[dict[str, Any]] = []
        self._seen = 0  # frames before this index were consumed by next()
        self._changed = asyncio.Event()
        self._ids = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, server: ServerProcess, token: str | None, *, via: str = "frame", **options: Any
    ) -> WsClient:
        """Connect and authenticate ``via`` the first frame, the ``query`` or a ``cookie``."""
        url = server.ws_url
        headers = {}
        if token is not None and via == "query":
            url += f"?token={token}"
        elif token is not None and via == "cookie":
            headers["Cookie"] = f"roomcast_token={token}"
        websocket = await connect(url, additional_headers=headers, **options)
        client = cls(websocket)
        if token is not None and via == "frame":
            await client.send({"type": "auth", "token": token})
        return client

    async def _read(self) -> None:
        try:
            async for message in self.websocket:
                self.frames.append(json.loads(message))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            if self.websocket.close_code is not None:
                self.close_code = self.websocket.close_code
                self.close_reason = self.websocket.close_reason or ""
            self._changed.set()

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Send one frame."""
        await self.websocket.send(json.dumps(frame))

    async def wait(self, found: Any, within: float = 5 * UNIT) -> Any:
        """Wait until ``found()`` returns something other than None."""
        async with asyncio.timeout(within):
            while True:
                self._changed.clear()
                result = found()
                if result is not None:
                    return result
                if self._task.done():
                    raise ConnectionError(
                        f"connection closed ({self.close_code} {self.close_reason!r})"
                    )
                await self._changed.wait()

    async def next(self, kind: str, within: float = 5 * UNIT) -> dict[str, Any]:
        """The next unconsumed frame of type ``kind`` (earlier frames stay available)."""

        def found() -> dict[str, Any] | None:
            for index in range(self._seen, len(self.frames)):
                frame = self.frames[index]
                if frame.get("type") == kind and not frame.get("_taken"):
                    frame["_taken"] = True
                    return frame
            return None

        frame: dict[str, Any] = await self.wait(found, within)
        return {k: v for k, v in frame.items() if k != "_taken"}

    async def request(self, frame: Mapping[str, Any], within: float = 5 * UNIT) -> dict[str, Any]:
        """Send ``frame`` with a fresh id; the reply (or error) that echoes it."""
        self._ids += 1
        request_id = f"q{self._ids}"
        await self.send({**frame, "id": request_id})

        def found() -> dict[str, Any] | None:
            for frame in self.frames:
                if frame.get("id") == request_id:
                    return frame
            return None

        reply: dict[str, Any] = await self.wait(found, within)
        return reply

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Every frame of a type received so far."""
        return [
            {k: v for k, v in f.items() if k != "_taken"} for f in self.frames if f["type"] == kind
        ]

    async def closed(self, within: float = 5 * UNIT) -> int | None:
        """Wait for the server to close the connection; the close code."""
        await asyncio.wait_for(asyncio.shield(self._task), within)
        return self.close_code

    async def close(self) -> None:
        """Close from the client side."""
        await self.websocket.close()
        await asyncio.gather(self._task, return_exceptions=True)


async def confirmed(
    server: ServerProcess,
    sub: str = "alice",
    *roles: str,
    tenant: str | None = "acme",
    **options: Any,
) -> WsClient:
    """A client of ``server`` as ``sub`` (a user unless ``roles`` say otherwise) of ``tenant``.

    Returns once ``connection.confirmed`` has arrived, so the client is in its
    own rooms (``user.{sub}.*``, ``tenant.{t}.*``) already. ``options`` go to
    :meth:`WsClient.connect`.
    """
    token = server.token(sub, *(roles or ("user",)), tenant=tenant)
    client = await WsClient.connect(server, token, **options)
    await client.next("connection.confirmed")
    return client


#: ``await open(server, sub, *roles, tenant=…)``: a confirmed client.
Open = Callable[..., Awaitable[WsClient]]


@asynccontextmanager
async def websockets() -> AsyncIterator[Open]:
    """A factory of :func:`confirmed` clients, all closed at the end.

    ``await open(server, "alice", tenant="acme")`` connects to ``server`` as
    a user (other roles after the name).
    """
    opened: list[WsClient] = []

    async def open_client(
        server: ServerProcess, sub: str, *roles: str, tenant: str | None = "acme", **options: Any
    ) -> WsClient:
        client = await confirmed(server, sub, *roles, tenant=tenant, **options)
        opened.append(client)
        return client

    try:
        yield open_client
    finally:
        for client in opened:
            await client.close()


async def join(client: WsClient, room: str, **fields: object) -> dict[str, Any]:
    """Join ``room``; the ``room_joined`` reply."""
    reply = await client.request({"type": "join_room", "room": room, **fields})
    assert reply["type"] == "room_joined", reply
    return reply
