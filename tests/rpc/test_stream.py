"""A Subscribe stream's bounded buffer (src/roomcast/rpc/stream.py)."""

from __future__ import annotations

import asyncio

from roomcast.brokers import Publication
from roomcast.rooms import Room, RoomName
from roomcast.rpc.stream import StreamRecipient

LOBBY = Room.of(RoomName("global.lobby"), None)
# What the buffer counts per event besides its bytes (tag and length).
OVERHEAD = 6


def events(first: int, count: int, size: int = 94) -> list[Publication]:
    """``count`` events of ``size`` bytes each, offsets from ``first``."""
    return [
        Publication(LOBBY, offset, "e", 0, bytes(size)) for offset in range(first, first + count)
    ]


def offsets(publications: list[Publication]) -> list[int]:
    return [p.offset for p in publications]


async def test_take_returns_runs_in_delivery_order() -> None:
    stream = StreamRecipient(1 << 20)
    stream.deliver(events(1, 3))
    stream.deliver(events(4, 2))
    assert offsets(stream.take(1 << 20)) == [1, 2, 3, 4, 5]
    assert stream.take(1 << 20) == []


async def test_take_splits_a_run_larger_than_a_message() -> None:
    stream = StreamRecipient(1 << 20)
    stream.deliver(events(1, 10))  # 100 bytes each, with overhead
    assert offsets(stream.take(250)) == [1, 2, 3]  # the event that crosses 250 is included
    assert offsets(stream.take(250)) == [4, 5, 6]
    assert offsets(stream.take(1 << 20)) == [7, 8, 9, 10]


async def test_take_wakes_the_writer_again_while_events_remain() -> None:
    stream = StreamRecipient(1 << 20)
    stream.deliver(events(1, 10))
    await asyncio.wait_for(stream.wait(), 1)
    stream.take(250)
    await asyncio.wait_for(stream.wait(), 1)  # set again: more to send


async def test_buffer_accounting_frees_what_was_taken() -> None:
    limit = 10 * (94 + OVERHEAD)
    stream = StreamRecipient(limit)
    for round_ in range(20):  # 20 x the limit in all, never more than the limit at once
        stream.deliver(events(round_ * 10 + 1, 10))
        assert len(stream.take(limit)) == 10
    assert not stream.overflowed


async def test_overflow_drops_the_buffer_and_ends_the_stream() -> None:
    stream = StreamRecipient(10 * (94 + OVERHEAD))
    stream.deliver(events(1, 10))
    assert not stream.ended
    stream.deliver(events(11, 1))
    assert stream.overflowed
    assert stream.ended
    assert stream.take(1 << 20) == []
    stream.deliver(events(12, 1))  # ignored once cut off
    assert stream.take(1 << 20) == []
