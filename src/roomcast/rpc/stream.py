"""A Subscribe stream as a recipient: a bounded buffer and its writer.

``deliver`` is called from the fan-out and only appends an already-encoded
frame; the stream's own task writes. Frames that pile up while a write is in
flight are sent together as one message (their encodings concatenate into
one ``SubscribeResponse``), so a busy stream sends fewer, larger messages.
When unsent events exceed the buffer, the stream is cut off at once: the
buffer is dropped, the writer is interrupted, and the call ends with
RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from ..brokers import Publication

__all__ = ["StreamRecipient"]

# Bytes a frame adds to an event's encoding (tag and length), for accounting.
_FRAME_OVERHEAD = 6


class StreamRecipient:
    """The receiving end of one Subscribe stream.

    Args:
        limit_bytes: unsent event bytes allowed before the stream is cut off.
    """

    __slots__ = ("_limit", "_pending", "_queue", "_task", "_wake", "overflowed", "stopping")

    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._pending = 0
        # Runs of events as the fan-out delivered them, with their sizes:
        # a batch is queued and taken as one item, not event by event.
        self._queue: deque[tuple[Sequence[Publication], int]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[object] | None = asyncio.current_task()
        self.overflowed = False
        self.stopping = False

    def deliver(self, publications: Sequence[Publication]) -> None:
        if self.overflowed:
            return
        if any(p.signal for p in publications):
            # Presence, typing and cursor signals are for WebSocket members.
            publications = [p for p in publications if not p.signal]
            if not publications:
                return
        size = sum([len(p.data) for p in publications]) + _FRAME_OVERHEAD * len(publications)
        self._queue.append((publications, size))
        self._pending += size
        if self._pending > self._limit:
            self.overflowed = True
            self._queue.clear()
            self._interrupt()
        self._wake.set()

    def stop(self) -> None:
        """End the stream: the server is shutting down."""
        self.stopping = True
        self._wake.set()
        self._interrupt()

    def _interrupt(self) -> None:
        # The writer may be parked in a write to a reader that stopped reading;
        # cancelling it is the only way to end the call promptly.
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def wait(self) -> None:
        """Until there is something to send, or the stream must end."""
        await self._wake.wait()
        self._wake.clear()

    def take(self, max_bytes: int) -> list[Publication]:
        """Remove and return queued publications, about ``max_bytes`` worth."""
        queue = self._queue
        taken: list[Publication] = []
        size = 0
        while queue and size < max_bytes:
            run, run_size = queue[0]
            if size + run_size <= max_bytes:
                queue.popleft()
                taken += run
                size += run_size
                continue
            # Too big to take whole: take events up to the limit, keep the rest.
            count = part = 0
            for publication in run:
                part += len(publication.data) + _FRAME_OVERHEAD
                count += 1
                if size + part >= max_bytes:
                    break
            taken += run[:count]
            size += part
            if count == len(run):
                queue.popleft()
            else:
                queue[0] = (run[count:], run_size - part)
        self._pending -= size
        if queue:
            self._wake.set()
        return taken

    @property
    def ended(self) -> bool:
        """Whether the stream must end now."""
        return self.overflowed or self.stopping
