"""gRPC clients of a test server: credentials, payloads, and a Subscribe stream read in order.

Waits are multiples of :data:`support.waiting.UNIT`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc

from roomcast.v1 import event_pb2, realtime_pb2, realtime_pb2_grpc
from support.waiting import UNIT

__all__ = ["Metadata", "Stream", "bearer", "payload"]

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    """gRPC metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)


def payload(**values: Any) -> Any:
    """A Struct payload."""
    from google.protobuf.struct_pb2 import Struct

    struct = Struct()
    struct.update(values)
    return struct


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
