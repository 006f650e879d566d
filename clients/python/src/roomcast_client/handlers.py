"""Calling an async handler for every event of a subscription, in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from roomcast_client.errors import RoomcastError
from roomcast_client.subscription import Subscription
from roomcast_client.values import Event, Gap

__all__ = ["EventHandler", "EventSubscription", "GapHandler"]

logger = logging.getLogger("roomcast_client")

_Item = TypeVar("_Item", Event, Gap)

EventHandler = Callable[[Event], Awaitable[None]]
"""Called once per event, one event at a time, in the order they arrive."""

GapHandler = Callable[[Gap], Awaitable[None]]
"""Called where events were lost (see ``Gap``)."""


async def _log_gap(gap: Gap) -> None:
    logger.warning(
        "events of room %r (tenant %r) were lost before offset %d: %s",
        gap.room,
        gap.tenant_id,
        gap.position.offset,
        gap.reason,
    )


class EventSubscription:
    """A running ``subscribe_to_events``: a handler fed by a subscription.

    A handler that raises is logged with the event it failed on, and the next
    event is handled as usual: one bad event does not stop the others. An
    error that ends the subscription itself (a refused resubscribe, or the
    reconnect attempts running out) is logged and kept in ``error``.
    """

    def __init__(
        self,
        subscription: Subscription,
        handler: EventHandler,
        on_gap: GapHandler | None,
        on_close: Callable[[EventSubscription], None],
    ) -> None:
        """Not called directly: use ``RoomcastClient.subscribe_to_events``."""
        self._subscription = subscription
        self._handler = handler
        self._on_gap = on_gap or _log_gap
        self._on_close = on_close
        self._task: asyncio.Task[None] | None = None
        self.handled = 0
        """Events the handler returned from."""
        self.failed = 0
        """Events the handler raised on."""
        self.error: RoomcastError | None = None
        """Why the subscription ended, when it ended on its own."""

    @property
    def subscription(self) -> Subscription:
        """The underlying subscription (its positions and reconnect count)."""
        return self._subscription

    async def start(self) -> None:
        """Subscribe, and run the handler once live. Called by the client.

        Raises:
            RoomcastError: The subscribe was refused or the server is unreachable.
        """
        await self._subscription.ready()
        rooms = self._subscription.rooms
        self._task = asyncio.create_task(self._run(), name=f"roomcast handler {rooms}")

    def cancel(self) -> None:
        """Stop handling events and close the subscription."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Cancel, and wait until the handler has stopped and the subscription is closed."""
        self.cancel()
        if self._task is not None:
            await asyncio.wait([self._task])

    def done(self) -> bool:
        """Whether the handler no longer runs (cancelled, or the subscription ended)."""
        return self._task is None or self._task.done()

    async def wait(self) -> None:
        """Wait until the handler stops.

        Raises:
            RoomcastError: The error that ended the subscription, if it ended on its own.
        """
        if self._task is not None:
            # asyncio.wait neither raises the task's cancellation here nor
            # cancels the task when the waiter itself is cancelled.
            await asyncio.wait([self._task])
        if self.error is not None:
            raise self.error

    async def _run(self) -> None:
        try:
            async for item in self._subscription:
                if isinstance(item, Gap):
                    await self._call(self._on_gap, item)
                elif await self._call(self._handler, item):
                    self.handled += 1
                else:
                    self.failed += 1
        except RoomcastError as error:
            self.error = error
            logger.error("subscription to %s ended: %r", self._subscription.rooms, error)
        finally:
            await self._subscription.aclose()
            self._on_close(self)

    async def _call(self, handler: Callable[[_Item], Awaitable[None]], item: _Item) -> bool:
        try:
            await handler(item)
        except Exception:
            logger.exception(
                "handler %r failed on %r of room %r (offset %d); going on with the next event",
                getattr(handler, "__qualname__", handler),
                item.event if isinstance(item, Event) else "gap",
                item.room,
                item.position.offset,
            )
            return False
        return True
