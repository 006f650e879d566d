"""Reads a client can ask for, bounded by bytes: history pages and reads in flight.

A 60-byte ``history`` request once became a 6 MB reply (a room of 100
events of 60 KB): what a client may ask for must cost at most what it may
hold. :func:`read_page` reads a room's stored events from the broker in
small chunks and stops at a byte budget, so a reply is never built — nor
read from Redis — beyond what it may carry; the page says whether more
events follow. :class:`ReadsInFlight` caps the reads one caller has going at
once, over every connection and call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from .brokers import Broker, Retention
from .errors import Overloaded
from .history import Page, Position
from .rooms import Room
from .v1.event_pb2 import Event

__all__ = ["FIRST_CHUNK", "ReadsInFlight", "event_offset", "read_page"]

#: Events the first chunk of a read asks for: enough for small events in
#: one round trip, at most 512 KiB of the largest (64 KiB) ones.
FIRST_CHUNK = 8


def event_offset(data: bytes) -> int:
    """The offset of an encoded stored event."""
    return Event.FromString(data).offset


async def read_page(
    broker: Broker,
    room: Room,
    retention: Retention,
    since: Position | None,
    limit: int,
    max_bytes: int,
) -> Page[bytes]:
    """Stored events after ``since``: at most ``limit``, about ``max_bytes`` of them.

    The page holds at least one event when there is one, however large, so
    a reader always moves on; beyond the first, events are added while they
    fit in ``max_bytes``. Later chunks are sized from the events read so
    far.

    Returns:
        The page, its ``more`` true when stored events follow its last one.
    """
    chunk = min(limit, FIRST_CHUNK)
    page = await broker.read(room, since, chunk, retention)
    recovered, reason = page.recovered, page.reason
    items: list[bytes] = []
    size = 0
    top = page.top
    while True:
        for data in page.items:
            if items and size + len(data) > max_bytes:
                return Page(items, top, recovered, reason, more=True)
            items.append(data)
            size += len(data)
        if len(items) >= limit or len(page.items) < chunk or not items:
            break
        last = event_offset(items[-1])
        if last >= top.offset:
            break
        average = max(size // len(items), 1)
        chunk = max(1, min(limit - len(items), (max_bytes - size) // average + 1))
        following = await broker.read(room, Position(last, top.epoch), chunk, retention)
        if not following.recovered:
            # The history moved on between two chunks (trimmed, or reset):
            # this page ends here, and the reader's next one says what is lost.
            return Page(items, top, recovered, reason, more=True)
        page, top = following, following.top
    more = bool(items) and event_offset(items[-1]) < top.offset
    return Page(items, top, recovered, reason, more=more)


class ReadsInFlight:
    """How many expensive reads each caller has going; at most ``limit`` each.

    Args:
        limit: reads one caller may have in flight at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: Counter[Hashable] = Counter()

    def begin(self, caller: Hashable) -> None:
        """Count a read of ``caller``; :meth:`end` it when its answer is built.

        Raises:
            Overloaded: the caller has ``limit`` reads in flight already.
        """
        if self._counts[caller] >= self.limit:
            raise Overloaded(
                f"{self.limit} reads of yours are in flight already; wait for their answers"
            )
        self._counts[caller] += 1

    def end(self, caller: Hashable) -> None:
        """The read of ``caller`` that :meth:`begin` counted is done."""
        self._counts[caller] -= 1
        if not self._counts[caller]:
            del self._counts[caller]

    @contextmanager
    def reading(self, caller: Hashable) -> Iterator[None]:
        """Count a read of ``caller`` while the block runs (see :meth:`begin`)."""
        self.begin(caller)
        try:
            yield
        finally:
            self.end(caller)
