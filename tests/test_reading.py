"""History read in pages by bytes (src/roomcast/reading.py), over the memory broker."""

from __future__ import annotations

import pytest

from roomcast.brokers import Draft, Retention
from roomcast.brokers.memory import MemoryBroker
from roomcast.errors import Overloaded
from roomcast.gate import encode_json
from roomcast.history import Position
from roomcast.reading import ReadsInFlight, event_offset, read_page
from roomcast.rooms import Room, RoomName
from roomcast.v1.event_pb2 import Event
from roomcast.wire import field_bytes

ROOM = Room.of(RoomName("chat.x"), None)


class CountingBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []

    async def read(self, room, since, limit, retention):  # type: ignore[no-untyped-def]
        self.reads.append(limit)
        return await super().read(room, since, limit, retention)


async def filled(sizes: list[int], retention: Retention) -> CountingBroker:
    broker = CountingBroker()
    await broker.start(lambda publications: None)
    for n, size in enumerate(sizes):
        payload = encode_json({"p": "x" * size})
        body = Event(room="chat.x", event="e", id=f"e{n}").SerializeToString()
        body += field_bytes(4, payload)
        await broker.publish(Draft(ROOM, f"e{n}", body, 0, retention))
    broker.reads.clear()
    return broker


RETENTION = Retention(1000, 300.0)


async def test_a_page_stops_at_its_byte_budget_and_says_more_follow() -> None:
    broker = await filled([60_000] * 100, RETENTION)
    page = await read_page(broker, ROOM, RETENTION, None, 1000, 256 * 1024)
    assert [event_offset(d) for d in page.items] == [1, 2, 3, 4]
    assert page.more
    assert page.recovered
    assert sum(len(d) for d in page.items) <= 256 * 1024
    # The broker was never asked for the room's whole history.
    assert sum(broker.reads) < 16


async def test_one_event_larger_than_the_budget_still_comes_alone() -> None:
    broker = await filled([60_000] * 3, RETENTION)
    page = await read_page(broker, ROOM, RETENTION, None, 1000, 1000)
    assert [event_offset(d) for d in page.items] == [1]
    assert page.more


async def test_small_events_come_in_few_reads_up_to_the_limit() -> None:
    broker = await filled([100] * 500, RETENTION)
    page = await read_page(broker, ROOM, RETENTION, Position(10, page_epoch(broker)), 300, 1 << 20)
    assert [event_offset(d) for d in page.items] == list(range(11, 311))
    assert page.more
    assert len(broker.reads) <= 3
    last = await read_page(broker, ROOM, RETENTION, Position(490, page_epoch(broker)), 300, 1 << 20)
    assert [event_offset(d) for d in last.items] == list(range(491, 501))
    assert not last.more


def page_epoch(broker: MemoryBroker) -> str:
    return next(iter(broker._logs.values()))[1].epoch


async def test_a_lost_position_reads_from_the_oldest_held() -> None:
    broker = await filled([100] * 20, Retention(5, 300.0))
    page = await read_page(broker, ROOM, Retention(5, 300.0), Position(3, "other"), 100, 1 << 20)
    assert not page.recovered
    assert [event_offset(d) for d in page.items] == [16, 17, 18, 19, 20]


def test_reads_in_flight_are_capped_per_caller() -> None:
    reads = ReadsInFlight(2)
    with reads.reading("a"), reads.reading("a"):
        with pytest.raises(Overloaded, match="2 reads of yours are in flight"), reads.reading("a"):
            pass
        with reads.reading("b"):
            pass
    with reads.reading("a"), reads.reading("a"):
        pass
