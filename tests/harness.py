"""Real servers for tests: a `roomcast serve` process on free ports, and clients.

Waits are multiples of ``UNIT`` (seconds); set ``ROOMCAST_TEST_UNIT`` to
stretch every wait at once on a slow machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
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
    "bearer",
    "payload",
    "repository",
    "start_server",
]

UNIT = float(os.environ.get("ROOMCAST_TEST_UNIT", "1.0"))
SECRET = "test-secret-0123456789abcdef0123456789"
_READY = re.compile(r"roomcast ready: grpc=(?P<host>[^:\s]+):(?P<port>\d+)")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)


@dataclass
class ServerProcess:
    """A running `roomcast serve`."""

    process: subprocess.Popen[str]
    target: str
    secret: str
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def token(self, sub: str, *roles: str, tenant: str | None = None, ttl: float = 3600.0) -> str:
        """A token signed with this server's secret."""
        return mint_token(self.secret, subject=sub, roles=roles, tenant=tenant, ttl=ttl)

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
    command = [sys.executable, "-m", "roomcast", "serve", "--host", "127.0.0.1", "--grpc-port", "0"]
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
    return ServerProcess(process, target[0], secret or "", output, reader)


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
