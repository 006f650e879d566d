"""A WebSocket connection's write path over a real socket (src/roomcast/bridge/connection.py).

Each test opens a real WebSocket connection inside the process
(:mod:`support.loopback`) and drives the server end's ``Connection`` the
way the core and the bridge do; what arrives is read from the client end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from support.loopback import Loopback, loopback
from support.waiting import UNIT

from roomcast.bridge.connection import Connection, Flusher
from roomcast.brokers import Publication
from roomcast.connections import Joined
from roomcast.errors import SlowConsumer
from roomcast.history import Position
from roomcast.presence import ConnectionId
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1.event_pb2 import Event, Sender

LOBBY = Room.of(RoomName("global.lobby"), None)
CHAT = Room.of(RoomName("chat.x"), TenantId("acme"))


def event(offset: int, where: Room = LOBBY, *, size: int = 0) -> Publication:
    """An event as the broker delivers it (``size``: bytes of padding in its payload)."""
    body = Event(room=where.name, event="said", id=f"e{offset}", offset=offset, epoch="ep")
    body.payload.update({"pad": "x" * size})
    return Publication(where, offset, "ep", time.time_ns(), body.SerializeToString())


def typing_from(connection_id: str, where: Room = LOBBY) -> Publication:
    """A typing signal sent by ``connection_id``."""
    body = Event(room=where.name, event="typing", sender=Sender(connection_id=connection_id))
    body.payload.update({"state": True})
    return Publication(where, 0, "ep", time.time_ns(), body.SerializeToString(), signal=True)


class Written:
    """The flusher's report: (frames written, acceptance times) per loop turn."""

    def __init__(self) -> None:
        self.turns: list[tuple[int, list[int]]] = []

    def __call__(self, frames: int, accepted_ns: list[int]) -> None:
        self.turns.append((frames, accepted_ns))


class Closer:
    """Closes a connection as the bridge does (in a task), recording each close."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, connection: Connection, code: int, reason: str) -> None:
        self.calls.append((code, reason))
        task = asyncio.create_task(connection.websocket.close(code, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def link() -> AsyncIterator[Loopback]:
    async with loopback() as pair:
        yield pair


def connect(
    pair: Loopback,
    flusher: Flusher | None = None,
    closer: Closer | None = None,
    *,
    limit: int = 1 << 20,
    reply_bytes: int | None = None,
    drain_timeout: float = 5 * UNIT,
    name: str = "c1",
) -> Connection:
    return Connection(
        ConnectionId(name),
        pair.server,
        flusher or Flusher(Written()),
        limit,
        closer or Closer(),
        reply_bytes,
        drain_timeout,
    )


def offsets(frames: Sequence[dict[str, object]]) -> list[object]:
    return [frame.get("offset") for frame in frames]


async def fill_kernel_buffers(connection: Connection) -> None:
    """Write until the stalled client's socket takes no more: later bytes stay in the transport."""
    transport = connection.websocket.transport
    for _ in range(200):
        if transport.get_write_buffer_size():
            return
        connection.send({"type": "filler", "pad": "x" * 4096})
        connection.flush()
        await asyncio.sleep(0)
    raise AssertionError("the kernel never stopped taking bytes")


@contextlib.asynccontextmanager
async def reading(pair: Loopback) -> AsyncIterator[None]:
    """The client reads (and drops) everything it is sent, while the block runs."""

    async def drain() -> None:
        async for _ in pair.client:
            pass

    task = asyncio.create_task(drain())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- delivering ------------------------------------------------------------------


async def test_events_of_one_turn_go_out_in_order_in_one_write(link: Loopback) -> None:
    written = Written()
    connection = connect(link, Flusher(written))
    connection.deliver([event(1), event(2)])
    connection.deliver([event(3)])
    frames = await link.frames(3)
    assert offsets(frames) == [1, 2, 3]
    assert [f["type"] for f in frames] == ["event"] * 3
    assert [turn[0] for turn in written.turns] == [3]  # one flush, three frames


async def test_an_event_is_encoded_once_for_every_connection() -> None:
    written = Written()
    flusher = Flusher(written)
    one = event(7)
    async with loopback() as first, loopback() as second:
        connect(first, flusher, name="a").deliver([one])
        connect(second, flusher, name="b").deliver([one])
        got = [await first.client.recv(), await second.client.recv()]
    assert got[0] == got[1]
    assert one.ws_frame is not None
    assert one.ws_frame[0].endswith(got[0].encode())
    # Two frames written, but the event's latency is reported once.
    assert written.turns == [(2, [one.accepted_ns])]


async def test_a_signal_skips_the_connection_it_came_from() -> None:
    flusher = Flusher(Written())
    signal = typing_from("a")
    async with loopback() as first, loopback() as second:
        sender = connect(first, flusher, name="a")
        other = connect(second, flusher, name="b")
        sender.deliver([signal])
        other.deliver([signal])
        frame = await second.frame()
        assert frame["type"] == "typing"
        assert frame["state"] is True
        assert await first.nothing_more()


async def test_a_reply_and_events_keep_the_order_they_were_queued_in(link: Loopback) -> None:
    connection = connect(link)
    connection.send({"type": "pong"}, "q1")
    connection.deliver([event(1)])
    connection.send({"type": "pong"})
    frames = await link.frames(3)
    assert frames[0] == {"type": "pong", "id": "q1"}
    assert frames[1]["offset"] == 1
    assert frames[2] == {"type": "pong"}


# -- holding a room's events while its join is answered --------------------------


async def test_held_events_follow_the_answer_and_only_those_after_its_position(
    link: Loopback,
) -> None:
    connection = connect(link)
    connection.hold(LOBBY.key)
    connection.deliver([event(3), event(4), event(5)])
    connection.deliver([typing_from("someone")])  # offset 0: never covered by a position
    connection.deliver([event(9, CHAT)])  # another room: not held
    assert connection.holding(LOBBY.key)
    connection.send({"type": "room_joined", "room": LOBBY.name, "offset": 4})
    connection.release(LOBBY.key, 4)
    frames = await link.frames(4)
    assert [f["type"] for f in frames] == ["event", "room_joined", "event", "typing"]
    assert offsets(frames) == [9, 4, 5, None]
    assert not connection.holding(LOBBY.key)


async def test_a_release_without_a_position_drops_the_held_events(link: Loopback) -> None:
    connection = connect(link)
    connection.hold(LOBBY.key)
    connection.deliver([event(1), event(2)])
    connection.release(LOBBY.key, None)
    connection.send({"type": "pong"})
    assert await link.frame() == {"type": "pong"}
    assert await link.nothing_more()


async def test_joined_answers_then_sends_what_came_after_the_position(link: Loopback) -> None:
    connection = connect(link)
    connection.hold(LOBBY.key)
    connection.deliver([event(1), event(2), event(3)])
    connection.joined(Joined(LOBBY, Position(2, "ep")), "q7")
    joined, live = await link.frames(2)
    assert joined["type"] == "room_joined"
    assert joined["id"] == "q7"
    assert (joined["offset"], joined["epoch"], joined["missed"]) == (2, "ep", [])
    assert live["offset"] == 3
    assert await link.nothing_more()


async def test_left_ends_the_join_and_says_so(link: Loopback) -> None:
    connection = connect(link)
    connection.typing.add(LOBBY.key)
    connection.hold(LOBBY.key)
    connection.deliver([event(1)])
    connection.left(LOBBY, "q2")
    assert await link.frame() == {"type": "room_left", "room": LOBBY.name, "id": "q2"}
    assert await link.nothing_more()
    assert LOBBY.key not in connection.typing


async def test_held_events_past_the_bound_close_the_connection_with_4100(
    link: Loopback,
) -> None:
    closer = Closer()
    connection = connect(link, closer=closer, limit=8 * 1024)
    connection.hold(LOBBY.key)
    for offset in range(1, 4):
        connection.deliver([event(offset, size=2000)])
    assert closer.calls == []  # about 6 KiB held: within the bound
    connection.deliver([event(4, size=3000)])
    assert closer.calls == [(4100, "slow consumer: fell too far behind")]
    assert connection.closing
    assert not connection.holding(LOBBY.key)  # the held bytes are let go at once
    connection.deliver([event(5)])
    connection.send({"type": "pong"})
    assert connection.flush() == 0
    assert await link.close_code() == 4100


# -- the bound on unsent bytes ---------------------------------------------------


async def test_a_reader_that_stops_reading_is_closed_with_4100(link: Loopback) -> None:
    closer = Closer()
    connection = connect(link, closer=closer, limit=64 * 1024)
    link.stall()
    for offset in range(1, 200):
        connection.deliver([event(offset, size=4000)])
        await asyncio.sleep(0)  # the flusher writes once per loop turn
        if closer.calls:
            break
    assert closer.calls == [(4100, "slow consumer: fell too far behind")]
    assert connection.websocket.transport.get_write_buffer_size() > 64 * 1024
    link.resume()
    assert await link.close_code(5 * UNIT) == 4100


async def test_a_closed_connection_takes_nothing_more(link: Loopback) -> None:
    closer = Closer()
    connection = connect(link, closer=closer)
    connection.disconnect(4001, "bye")
    connection.disconnect(4100, "again")
    assert closer.calls == [(4001, "bye")]
    connection.deliver([event(1)])
    connection.send({"type": "pong"})
    assert connection.flush() == 0
    assert await link.close_code() == 4001


async def test_frames_queued_for_a_socket_that_closed_are_dropped(link: Loopback) -> None:
    connection = connect(link)
    await link.client.close()
    await link.server.wait_closed()
    connection.send({"type": "pong"})
    assert connection.flush() == 0
    assert connection.pending_bytes() == 0


# -- reply budgets -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "reply_bytes", "budget"),
    [(1000, None, 500), (1000, 800, 500), (1000, 100, 100)],
)
async def test_a_reply_takes_at_most_half_the_bound(
    link: Loopback, limit: int, reply_bytes: int | None, budget: int
) -> None:
    assert await connect(link, limit=limit, reply_bytes=reply_bytes).reply_budget() == budget


async def test_a_reply_waits_for_the_client_to_read_what_it_has(link: Loopback) -> None:
    limit = 256 * 1024
    closer = Closer()
    connection = connect(link, closer=closer, limit=limit)
    link.stall()
    await fill_kernel_buffers(connection)
    for _ in range(40):  # about 160 KiB queued: with a 128 KiB reply, past the bound
        connection.send({"type": "filler", "pad": "x" * 4096})
    budget = asyncio.create_task(connection.reply_budget())
    await asyncio.sleep(0.2 * UNIT)
    assert not budget.done()
    assert connection.pending_bytes() > limit // 2
    link.resume()
    async with reading(link):
        assert await asyncio.wait_for(budget, 5 * UNIT) == limit // 2
    assert closer.calls == []


async def test_a_reply_that_finds_no_room_in_time_closes_with_4100(link: Loopback) -> None:
    closer = Closer()
    connection = connect(link, closer=closer, limit=256 * 1024, drain_timeout=0.2 * UNIT)
    link.stall()
    await fill_kernel_buffers(connection)
    connection.hold(LOBBY.key)
    for _ in range(40):
        connection.send({"type": "filler", "pad": "x" * 4096})
    with pytest.raises(SlowConsumer):
        await connection.reply_budget()
    assert closer.calls == [(4100, "slow consumer: did not read the replies it asked for")]
    assert not connection.holding(LOBBY.key)
