"""A real WebSocket connection inside the test's process: both ends, over loopback TCP.

For the bridge's unit tests: the server end is what the bridge's
``Connection`` writes to, the client end is a plain ``websockets`` client
the test reads (or stops reading). Nothing is faked: frames cross a real
socket, and a client that stops reading fills real buffers. The socket
buffers are kept small (:data:`SOCKET_BUFFER`) so that a stalled reader
backs up into the server's transport after a few hundred KiB, not many MiB.

Waits are multiples of :data:`support.waiting.UNIT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from support.waiting import UNIT

__all__ = ["SOCKET_BUFFER", "Loopback", "loopback"]

#: SO_SNDBUF of the server's socket and SO_RCVBUF of the client's (the kernel doubles them).
SOCKET_BUFFER = 16 * 1024


@dataclass
class Loopback:
    """Both ends of one WebSocket connection."""

    server: ServerConnection
    client: ClientConnection

    async def frame(self, within: float = 2 * UNIT) -> dict[str, Any]:
        """The next frame the client receives, as JSON."""
        message = await asyncio.wait_for(self.client.recv(), within)
        frame: dict[str, Any] = json.loads(message)
        return frame

    async def frames(self, count: int, within: float = 2 * UNIT) -> list[dict[str, Any]]:
        """The next ``count`` frames the client receives."""
        return [await self.frame(within) for _ in range(count)]

    async def nothing_more(self, within: float = 0.1 * UNIT) -> bool:
        """Whether the client receives no frame within ``within`` seconds."""
        try:
            message = await asyncio.wait_for(self.client.recv(), within)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame: {message!r}")

    def stall(self) -> None:
        """The client stops reading its socket (until :meth:`resume`)."""
        self.client.transport.pause_reading()

    def resume(self) -> None:
        """The client reads its socket again."""
        self.client.transport.resume_reading()

    async def close_code(self, within: float = 2 * UNIT) -> int | None:
        """Wait for the connection to close (reading what is left); the server's close code."""
        async with asyncio.timeout(within):
            with contextlib.suppress(ConnectionClosed):
                async for _ in self.client:
                    pass
        return self.client.close_code


@asynccontextmanager
async def loopback(**client_options: Any) -> AsyncIterator[Loopback]:
    """A server and a client end of one fresh connection, closed afterwards.

    ``client_options`` go to ``websockets.asyncio.client.connect``.
    Compression is off on both ends, as the bridge has it.
    """
    accepted: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()
    finished = asyncio.Event()

    async def handler(websocket: ServerConnection) -> None:
        sock = websocket.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        accepted.set_result(websocket)
        await finished.wait()  # the connection lives until the test is done with it

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        async with connect(
            f"ws://127.0.0.1:{port}", sock=sock, compression=None, **client_options
        ) as client:
            websocket = await asyncio.wait_for(accepted, 2 * UNIT)
            pair = Loopback(websocket, client)
            try:
                yield pair
            finally:
                finished.set()
                # A stalled client reads again, so the closing handshake
                # is not stuck behind the frames it left unread.
                pair.resume()
                await pair.close_code(10 * UNIT)
