"""A Subscribe stream that survives disconnects and says when it lost events.

One task per subscription reads the gRPC stream into a small bounded buffer;
the caller iterates the buffer. When the stream breaks after it was live, the
task subscribes again with ``since`` set to the last position it saw in each
room, so the server replays what was missed. Where the server cannot replay
(``recovered=false``), the caller gets a ``Gap`` in the stream of events
instead of a silent hole.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import betterproto

from roomcast_client import v1
from roomcast_client.errors import (
    ClientClosed,
    DeadlineExceeded,
    ResourceExhausted,
    RoomcastError,
    ServerError,
    Unavailable,
    from_transport,
)
from roomcast_client.values import Event, Gap, Position
from roomcast_client.wire import event_from, position_to

__all__ = ["DEFAULT_RECONNECT", "Reconnect", "StreamOpener", "Subscription"]

logger = logging.getLogger("roomcast_client")

StreamOpener = Callable[[v1.SubscribeRequest], AsyncGenerator[v1.SubscribeResponse, None]]
"""Starts one Subscribe call; the client binds the channel and the token."""

# How many events and gaps wait for the caller before the reader stops
# reading. Past that, HTTP/2 flow control holds the server back, and a
# caller that stays this slow is cut off by the server (RESOURCE_EXHAUSTED),
# after which the subscription resumes from its last position.
_BUFFERED_ITEMS = 1024

# A stream that had been live and then ended for one of these reasons is
# worth subscribing again: the server went away or is draining, the caller
# read too slowly, or something failed in between. A refusal of the request
# itself (token, policy, arguments) would only be refused again.
_RETRYABLE = (Unavailable, ResourceExhausted, DeadlineExceeded, ServerError)


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a subscription waits between attempts to subscribe again.

    Attributes:
        initial_delay: Seconds before the first attempt.
        max_delay: The longest wait between attempts.
        multiplier: Growth of the wait after each failed attempt.
        max_attempts: Failed attempts in a row before the subscription gives
            up and raises the last error; ``None`` tries for ever.
    """

    initial_delay: float = 0.1
    max_delay: float = 5.0
    multiplier: float = 2.0
    max_attempts: int | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (from 1), with jitter.

        The jitter (up to a fifth off) keeps many clients that lost the same
        server from coming back in lockstep.
        """
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return base * random.uniform(0.8, 1.0)


DEFAULT_RECONNECT = Reconnect()


class Subscription:
    """Events of the followed rooms, in order, as an async iterator.

    Yields ``Event`` values, and a ``Gap`` where events of a room were lost.
    Use it as an async context manager, which waits until the subscription is
    live and closes it on exit::

        async with client.subscribe(["global.*"]) as events:
            async for item in events:
                ...

    The first subscribe is not retried: a refused or unreachable first call
    raises at once. After the stream was live, a broken stream (the server
    went away, is shutting down, or cut off a slow reader) is subscribed
    again with the last position seen in each room; refusals (token, policy)
    end the iteration with their exception.
    """

    def __init__(
        self,
        open_stream: StreamOpener,
        rooms: Sequence[str],
        since: Mapping[str, Position],
        tenant_id: str,
        *,
        reconnect: Reconnect,
        own_tenant: str | None,
        on_close: Callable[[Subscription], None],
    ) -> None:
        """Not called directly: use ``RoomcastClient.subscribe``."""
        self._open = open_stream
        self._rooms = list(rooms)
        self._tenant_id = tenant_id
        self._reconnect = reconnect
        self._own_tenant = own_tenant
        self._on_close = on_close
        # Positions asked for by the caller and not yet answered by a
        # recovery marker; sent again as they are if the stream breaks first.
        self._pending_since = dict(since)
        self._positions: dict[tuple[str, str], Position] = {}
        self._items: deque[Event | Gap] = deque()
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._live = asyncio.Event()
        self._ever_live = False
        self._failures = 0
        self._error: RoomcastError | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.reconnects = 0
        """Attempts to subscribe again after a break, successful or not."""

    @property
    def rooms(self) -> list[str]:
        """The rooms and patterns followed."""
        return list(self._rooms)

    @property
    def positions(self) -> dict[tuple[str, str], Position]:
        """The last position seen per ``(tenant_id, room)``: what a resume would ask for."""
        return dict(self._positions)

    async def ready(self) -> None:
        """Wait until the subscription is live: events published from now on arrive.

        Raises:
            RoomcastError: The subscribe was refused, or the server could not be reached.
        """
        self._start()
        await self._live.wait()
        if not self._ever_live:
            raise self._error or ClientClosed("the subscription was closed before it was live")

    async def aclose(self) -> None:
        """Stop following and disconnect; the iteration ends. Safe to call again, from any task."""
        first = not self._closed
        self._closed = True
        self._items.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            # asyncio.wait does not raise the task's cancellation here, yet
            # lets a cancellation of the caller itself through.
            await asyncio.wait([self._task])
        self._live.set()
        self._changed.set()
        if first:
            self._on_close(self)
            # The connection's socket closes on the loop's next turn; take it
            # here, so that it is gone when aclose() returns.
            await asyncio.sleep(0)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event | Gap:
        self._start()
        while True:
            if self._items:
                item = self._items.popleft()
                self._room.set()
                return item
            if self._closed:
                raise StopAsyncIteration
            if self._task is not None and self._task.done():
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._changed.clear()
            await self._changed.wait()

    async def __aenter__(self) -> Subscription:
        try:
            await self.ready()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"roomcast subscribe {self._rooms}")

    async def _run(self) -> None:
        """Read streams one after the other until a final error or ``aclose``."""
        try:
            while True:
                error = await self._follow_once()
                if not self._ever_live or not isinstance(error, _RETRYABLE):
                    raise error
                self._failures += 1
                limit = self._reconnect.max_attempts
                if limit is not None and self._failures > limit:
                    raise error
                delay = self._reconnect.delay(self._failures)
                logger.warning(
                    "subscription to %s broke (%s: %s); subscribing again in %.2fs",
                    self._rooms,
                    error.code,
                    error.message,
                    delay,
                )
                await asyncio.sleep(delay)
                self.reconnects += 1
        except RoomcastError as error:
            # Kept for the caller, who gets it from ready() or the iteration:
            # the task itself never ends with an unretrieved exception.
            self._error = error
        finally:
            self._live.set()
            self._changed.set()

    async def _follow_once(self) -> RoomcastError:
        """Follow one Subscribe call to its end; why it ended."""
        stream = self._open(self._request())
        try:
            async for message in stream:
                await self._absorb(message)
            return Unavailable("the server ended the stream")
        except Exception as error:  # grpclib, h2 and socket errors alike
            return from_transport(error)
        finally:
            await stream.aclose()

    def _request(self) -> v1.SubscribeRequest:
        since = {room: position_to(p) for room, p in self._pending_since.items()}
        for (tenant, room), position in list(self._positions.items()):
            if self._can_name(tenant, room):
                since[room] = position_to(position)
                continue
            # One request has one tenant_id: a platform-level stream without
            # one cannot name a room that is placed by tenant_id. Say so
            # rather than resume without it.
            del self._positions[(tenant, room)]
            self._items.append(
                Gap(
                    room,
                    tenant,
                    position,
                    f"cannot resume room {room!r} of tenant {tenant!r} on a stream "
                    "without tenant_id; events after this position may be lost",
                )
            )
            self._changed.set()
        return v1.SubscribeRequest(rooms=self._rooms, since=since, tenant_id=self._tenant_id)

    def _can_name(self, tenant: str, room: str) -> bool:
        """Whether ``since`` of this stream places ``room`` in ``tenant``."""
        return (
            not tenant
            or tenant == self._tenant_id
            or tenant == self._own_tenant
            # Built-in tenant rooms carry their tenant in the name.
            or room.startswith(f"tenant.{tenant}.")
        )

    async def _absorb(self, message: v1.SubscribeResponse) -> None:
        for raw in message.events:
            event = event_from(raw)
            if event.offset:
                self._positions[(event.tenant_id, event.room)] = event.position
            await self._put(event)
        if betterproto.serialized_on_wire(message.recovery):
            recovery = message.recovery
            position = Position(recovery.position.offset, recovery.position.epoch)
            self._pending_since.pop(recovery.room, None)
            self._positions[(recovery.tenant_id, recovery.room)] = position
            if not recovery.recovered:
                await self._put(Gap(recovery.room, recovery.tenant_id, position, recovery.reason))
        if betterproto.serialized_on_wire(message.subscribed):
            if self._ever_live:
                logger.info("subscription to %s is live again", self._rooms)
            self._ever_live = True
            self._failures = 0
            self._live.set()

    async def _put(self, item: Event | Gap) -> None:
        while len(self._items) >= _BUFFERED_ITEMS:
            self._room.clear()
            await self._room.wait()
        self._items.append(item)
        self._changed.set()
