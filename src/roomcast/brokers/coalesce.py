"""Calls made in one event-loop turn, run as one batch (auto-pipelining).

Sixty-four gRPC calls in flight publishing to Redis each cost a command
round trip, a script run and a pub/sub message when sent one by one. Queued
for the rest of the turn and sent together, they cost one pipeline, one
script run per room and one message per room (``redis/publish.lua``). The
wait is one turn of the event loop — no timer, so a lone call goes out as
soon as it would have. ioredis (``enableAutoPipelining``) and rueidis, the
client centrifuge's Redis broker uses, do the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Collects items submitted in one event-loop turn and runs them as one batch.

    Args:
        run: runs a batch; returns one result per item, in order. If it
            raises, every caller of that batch gets the exception.
        most: the largest batch; more items in one turn make several.
    """

    def __init__(
        self, run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]], most: int
    ) -> None:
        self._run = run
        self._most = most
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        """Run ``item`` with the others of this turn; its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, future))
        if self._handle is None:
            self._handle = loop.call_soon(self._dispatch)
        return await future

    def close(self) -> None:
        """Cancel the batches in flight and what is queued (the broker is closing)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for _, future in self._queue:
            future.cancel()
        self._queue = []
        for task in self._tasks:
            task.cancel()

    def _dispatch(self) -> None:
        self._handle = None
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), self._most):
            task = asyncio.create_task(self._batch(queue[start : start + self._most]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _batch(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # every caller sees it; none is lost in a task
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have given up (a deadline)
                future.set_result(result)
