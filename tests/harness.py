"""Real servers for tests: a `roomcast serve` process on free ports, and clients.

Waits are multiples of ``UNIT`` (seconds); set ``ROOMCAST_TEST_UNIT`` to
stretch every wait at once on a slow machine.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from roomcast.auth import mint_token
from roomcast.v1 import event_pb2, realtime_pb2, realtime_pb2_grpc

__all__ = [
    "UNIT",
    "ServerProcess",
    "Stream",
    "WsClient",
    "bearer",
    "eventually",
    "payload",
    "repository",
    "start_server",
]

UNIT = float(os.environ.get("ROOMCAST_TEST_UNIT", "1.0"))
SECRET = "test-secret-0123456789abcdef0123456789"
_READY = re.compile(
    r"roomcast ready: grpc=(?P<host>[^:\s]+):(?P<port>\d+) http=[^:\s]+:(?P<http_port>\d+)"
)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)


@dataclass
class ServerProcess:
    """A running `roomcast serve`."""

    process: subprocess.Popen[str]
    target: str
    secret: str
    http: str = ""
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def token(self, sub: str, *roles: str, tenant: str | None = None, ttl: float = 3600.0) -> str:
        """A token signed with this server's secret."""
        return mint_token(self.secret, subject=sub, roles=roles, tenant=tenant, ttl=ttl)

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint."""
        return f"ws://{self.http}/ws"

    def channel(self) -> grpc.aio.Channel:
        """A new client channel to this server."""
        return grpc.aio.insecure_channel(self.target)

    def stop(self, timeout: float = 15 * UNIT) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(5 * UNIT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    @property
    def log(self) -> str:
        """Everything the server printed so far."""
        return "".join(self.output)


def start_server(
    *args: str,
    env: Mapping[str, str] | None = None,
    secret: str | None = SECRET,
    timeout: float = 20 * UNIT,
) -> ServerProcess:
    """Start `python -m roomcast serve` on a free gRPC port and wait until ready."""
    command = [
        *(sys.executable, "-m", "roomcast", "serve", "--host", "127.0.0.1"),
        *("--grpc-port", "0", "--http-port", "0"),
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    environment.update(env or {})
    if secret is not None:
        environment["ROOMCAST_JWT_SECRET"] = secret
    process = subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    output: list[str] = []
    found = threading.Event()
    target: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = _READY.search(line)
            if match and not found.is_set():
                target.append(f"{match['host']}:{match['port']}")
                target.append(f"{match['host']}:{match['http_port']}")
                found.set()
        found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if not found.wait(timeout) or not target:
        process.kill()
        process.wait()
        reader.join(5 * UNIT)
        process.stdout.close()
        raise RuntimeError("server did not start:\n" + "".join(output))
    return ServerProcess(process, target[0], secret or "", target[1], output, reader)


class Stream:
    """A Subscribe stream read in the background, with events collected in order."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        token: str,
        rooms: Iterable[str],
        *,
        since: Mapping[str, tuple[int, str]] | None = None,
        tenant_id: str = "",
    ) -> None:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        request = realtime_pb2.SubscribeRequest(
            rooms=list(rooms),
            tenant_id=tenant_id,
            since={
                room: event_pb2.StreamPosition(offset=offset, epoch=epoch)
                for room, (offset, epoch) in (since or {}).items()
            },
        )
        self.call = stub.Subscribe(request, metadata=bearer(token))
        self.events: list[event_pb2.Event] = []
        self.recoveries: list[realtime_pb2.Recovery] = []
        self.subscribed = asyncio.Event()
        self._changed = asyncio.Event()
        self.error: grpc.aio.AioRpcError | None = None
        self.messages = 0
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.messages += 1
                self.events.extend(response.events)
                if response.HasField("recovery"):
                    self.recoveries.append(response.recovery)
                if response.HasField("subscribed"):
                    self.subscribed.set()
                self._changed.set()
        except grpc.aio.AioRpcError as error:
            self.error = error
        finally:
            self._changed.set()
            self.subscribed.set()

    async def ready(self, within: float = 5 * UNIT) -> Stream:
        """Wait for the ``subscribed`` marker; raise the stream's error if it failed."""
        await asyncio.wait_for(self.subscribed.wait(), within)
        if self.error is not None:
            raise self.error
        return self

    async def wait_for(self, count: int, within: float = 5 * UNIT) -> list[event_pb2.Event]:
        """Wait until at least ``count`` events arrived."""
        async with asyncio.timeout(within):
            while len(self.events) < count and self.error is None and not self._task.done():
                self._changed.clear()
                await self._changed.wait()
        return self.events

    async def until(self, condition: Callable[[], object], within: float = 5 * UNIT) -> None:
        """Wait until ``condition()`` is true, checking as events arrive."""
        async with asyncio.timeout(within):
            while not condition():
                if self.error is not None or self._task.done():
                    raise AssertionError(f"stream ended: {self.error}")
                self._changed.clear()
                await self._changed.wait()

    async def ended(self, within: float = 5 * UNIT) -> grpc.aio.AioRpcError | None:
        """Wait for the stream to end; its error, if any."""
        await asyncio.wait_for(asyncio.shield(self._task), within)
        return self.error

    def cancel(self) -> None:
        """Stop following."""
        self.call.cancel()
        self._task.cancel()


def repository() -> Path:
    """The repository's root folder."""
    return Path(__file__).resolve().parent.parent


def payload(**values: Any) -> Any:
    """A Struct payload."""
    from google.protobuf.struct_pb2 import Struct

    struct = Struct()
    struct.update(values)
    return struct


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
        from websockets.asyncio.client import connect

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
        import json

        from websockets.exceptions import ConnectionClosed

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
        import json

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


async def eventually(
    check: Callable[[], Any], within: float = 10 * UNIT, every: float = 0.05 * UNIT
) -> Any:
    """Wait until ``check()`` (a function or a coroutine function) is truthy; its value."""
    async with asyncio.timeout(within):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            # Polling: what is checked (another process) has no event to wait on.
            await asyncio.sleep(every)
