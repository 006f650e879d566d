"""Attacks with what a client may ask for: every reply has a byte budget, the node a ceiling.

A 60-byte ``history`` request once became a 6 MB reply; ten connections of
one user that asked forty times each and stopped reading took a node from
171 MB to 1.5 GB. Here the same attack runs against a real server, whose
resident size is sampled throughout, while a legitimate client connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import psutil
import pytest
from support.grpc import Stream, bearer
from support.server import ServerProcess, serving
from support.waiting import UNIT, eventually
from support.ws import WsClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from roomcast.v1 import admin_pb2, admin_pb2_grpc, event_pb2, realtime_pb2, realtime_pb2_grpc

EVENTS = 100
EVENT_BYTES = 60_000
ATTACKERS = 10  # the user's limit of connections
REQUESTS = 40
MiB = 1 << 20


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serving(env={"ROOMCAST_WS_DRAIN_TIMEOUT": "3"}) as process:
        yield process


@pytest.fixture(scope="module")
async def full_room(server: ServerProcess) -> str:
    """chat.big of acme holding 100 events of 60 KB, sent by an ordinary user in a second.

    Four connections of the user, each within its burst of frames.
    """
    fillers = [
        await WsClient.connect(server, server.token("mallory", "user", tenant="acme"))
        for _ in range(4)
    ]

    async def fill(filler: WsClient, numbers: range) -> None:
        await filler.next("connection.confirmed")
        await filler.request({"type": "join_room", "room": "chat.big"})
        for n in numbers:
            frame = {"type": "send_message", "event": "e", "rooms": ["chat.big"]}
            frame["payload"] = {"n": n, "blob": "x" * EVENT_BYTES}
            assert (await filler.request(frame))["type"] == "message_sent"

    share = EVENTS // len(fillers)
    await asyncio.gather(
        *(fill(f, range(i * share, (i + 1) * share)) for i, f in enumerate(fillers))
    )
    for filler in fillers:
        await filler.close()
    return "chat.big"


class Sampler:
    """The server's resident size, sampled every 50 ms in the background."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(0.05)

    def stop(self) -> int:
        self._task.cancel()
        return self.peak - self.baseline


async def small_window(server: ServerProcess) -> socket.socket:
    """A socket connected to the server with a small receive window.

    So that the server's bytes wait in its own buffers rather than in the
    kernel's (loopback's take megabytes).
    """
    host, port = server.http.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return sock


async def stalled_attacker(server: ServerProcess, room: str) -> Any:
    """A connection of mallory that asks for the room's history 40 times, then never reads."""
    websocket = await connect(server.ws_url, max_queue=1, sock=await small_window(server))
    token = server.token("mallory", "user", tenant="acme")
    await websocket.send(json.dumps({"type": "auth", "token": token}))
    await websocket.recv()  # connection.confirmed; from now on nothing is read
    for _ in range(REQUESTS):
        await websocket.send(json.dumps({"type": "history", "room": room, "limit": 1000}))
    return websocket


async def logged(server: ServerProcess, text: str, count: int, within: float) -> None:
    """Until the server's log holds ``text`` ``count`` times."""
    await eventually(lambda: server.log.count(text) >= count, within)


async def close_code(websocket: Any) -> int | None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in websocket:
            pass
    return websocket.close_code


async def test_stalled_history_amplification_stays_within_budget(
    server: ServerProcess, full_room: str
) -> None:
    sampler = Sampler(server.process.pid)
    attackers = await asyncio.gather(
        *(stalled_attacker(server, full_room) for _ in range(ATTACKERS))
    )
    await asyncio.sleep(1 * UNIT)
    # A legitimate client connects within a second while the attack goes on.
    started = time.monotonic()
    legit = await WsClient.connect(server, server.token("alice", "user", tenant="acme"))
    await legit.next("connection.confirmed", within=1 * UNIT)
    assert time.monotonic() - started < 1 * UNIT
    # Its own history comes in pages that say where to go on.
    page = await legit.request({"type": "history", "room": full_room, "limit": 1000})
    assert page["more"]
    assert 1 <= len(page["events"]) <= 5
    await legit.close()
    # The attackers asked for 10 x 40 x 6 MB; each got what fits its budget,
    # then was closed as a slow consumer after the drain timeout (3 s) —
    # all without reading a byte (reading would let the server go on).
    await logged(server, "with 4100", ATTACKERS, within=20 * UNIT)
    codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in attackers)), 20 * UNIT)
    growth = sampler.stop()
    assert codes == [4100] * ATTACKERS
    assert growth < 100 * MiB, f"server grew by {growth / MiB:.0f} MiB"
    assert "Traceback" not in server.log


async def test_get_history_pages_by_bytes(server: ServerProcess, full_room: str) -> None:
    service = bearer(server.token("backend", "service", tenant="acme"))
    async with server.channel() as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        offsets: list[int] = []
        request = admin_pb2.GetHistoryRequest(room=full_room, limit=1000)
        while True:
            page = await admin.GetHistory(request, metadata=service)
            assert page.ByteSize() <= 1 * MiB + EVENT_BYTES + 1000
            offsets += [e.offset for e in page.events]
            if not page.more:
                break
            request.since.CopyFrom(
                event_pb2.StreamPosition(offset=offsets[-1], epoch=page.position.epoch)
            )
        assert offsets == list(range(1, EVENTS + 1))


async def test_a_resume_replays_in_pages_and_misses_nothing(
    server: ServerProcess, full_room: str
) -> None:
    client = await WsClient.connect(server, server.token("alice", "user", tenant="acme"))
    await client.next("connection.confirmed")
    epoch = (await client.request({"type": "history", "room": full_room, "limit": 1}))["epoch"]
    joined = await client.request(
        {"type": "join_room", "room": full_room, "since": {"offset": 0, "epoch": epoch}}
    )
    assert joined["more"]
    missed = list(joined["missed"])
    frame = joined
    while frame["more"]:
        frame = await client.next("missed")
        assert frame["recovered"]
        missed += frame["events"]
    assert [e["offset"] for e in missed] == list(range(1, EVENTS + 1))
    await client.close()
    # And over gRPC: Subscribe with since replays it all, in messages of at
    # most max_frame_bytes (512 KiB) plus one event.
    token = server.token("backend", "service", tenant="acme")
    async with server.channel() as channel:
        stream = await Stream(channel, token, [full_room], since={full_room: (0, epoch)}).ready()
        await stream.wait_for(EVENTS, 10 * UNIT)
        assert [e.offset for e in stream.events] == list(range(1, EVENTS + 1))
        assert stream.recoveries[0].recovered
        assert stream.messages >= EVENTS * EVENT_BYTES // (512 * 1024)
        stream.cancel()


async def stalled_joiner(
    server: ServerProcess, room: str, since: event_pb2.StreamPosition
) -> tuple[Any, str]:
    """A connection of alice that joins ``room`` 100 events (6 MB) back and reads no more.

    Returns:
        The websocket and its connection id.
    """
    websocket = await connect(server.ws_url, max_queue=1, sock=await small_window(server))
    await websocket.send(
        json.dumps({"type": "auth", "token": server.token("alice", "user", tenant="acme")})
    )
    connection_id = json.loads(await websocket.recv())["connection_id"]
    back = {"offset": since.offset - EVENTS, "epoch": since.epoch}
    await websocket.send(json.dumps({"type": "join_room", "room": room, "since": back}))
    return websocket, connection_id


async def until_member(
    admin: admin_pb2_grpc.AdminServiceStub,
    room: str,
    connection_id: str,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    """Until the connection is one of the room's members (its join was taken)."""
    request = admin_pb2.GetPresenceRequest(room=room)

    async def joined() -> bool:
        members = (await admin.GetPresence(request, metadata=metadata)).members
        return any(m.connection_id == connection_id for m in members)

    await eventually(joined, 5 * UNIT, every=0.01)


async def read_frames(websocket: Any, until_id: str) -> list[dict[str, Any]]:
    """Frames until the reply with id ``until_id`` (or the connection's close)."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(10 * UNIT):
            async for message in websocket:
                frames.append(json.loads(message))
                if frames[-1].get("id") == until_id:
                    break
    return frames


async def test_a_leave_ends_a_paged_join_and_drops_what_it_held(
    server: ServerProcess, full_room: str
) -> None:
    backend = server.token("backend", "service", tenant="acme")
    async with server.channel() as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        history = admin_pb2.GetHistoryRequest(room=full_room, limit=1)
        top = (await admin.GetHistory(history, metadata=bearer(backend))).position
        websocket, connection_id = await stalled_joiner(server, full_room, top)
        # The join's missed events fill the connection's budget: the rest
        # waits for the client to read. Meanwhile a backend removes it from
        # the room, and events go on arriving in the room.
        await until_member(admin, full_room, connection_id, bearer(backend))
        realtime = realtime_pb2_grpc.RealtimeServiceStub(channel)
        leave = realtime_pb2.LeaveRoomRequest(room=full_room, connection_id=connection_id)
        assert (await realtime.LeaveRoom(leave, metadata=bearer(backend))).connections == 1
        publish = realtime_pb2.PublishRequest(room=full_room, event="after")
        for _ in range(3):
            await realtime.Publish(publish, metadata=bearer(backend))
    await websocket.send(json.dumps({"type": "ping", "id": "last"}))
    frames = await read_frames(websocket, until_id="last")
    await websocket.close()
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "room_joined"
    assert frames[0]["more"]  # the join was being answered in pages
    left = kinds.index("room_left")
    # Nothing of the room after room_left: no more missed pages, no held events.
    assert set(kinds[left + 1 :]) <= {"pong"}, kinds
    assert all(f.get("event") != "after" for f in frames)


async def test_events_held_behind_a_paged_join_count_against_the_budget(
    server: ServerProcess, full_room: str
) -> None:
    backend = bearer(server.token("backend", "service", tenant="acme"))
    async with server.channel() as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        history = admin_pb2.GetHistoryRequest(room=full_room, limit=1)
        top = (await admin.GetHistory(history, metadata=backend)).position
        websocket, connection_id = await stalled_joiner(server, full_room, top)
        await until_member(admin, full_room, connection_id, backend)
        # While the join waits for the client to read, the room goes on:
        # 20 x 60 KB held for it would pass its 1 MiB bound.
        realtime = realtime_pb2_grpc.RealtimeServiceStub(channel)
        publish = realtime_pb2.PublishRequest(room=full_room, event="live")
        publish.payload.update({"blob": "y" * EVENT_BYTES})
        for _ in range(20):
            await realtime.Publish(publish, metadata=backend)
    # Closed for falling behind, not after the drain timeout for its reply.
    await logged(server, "fell too far behind", 1, within=2 * UNIT)
    frames = await read_frames(websocket, until_id="never")
    assert websocket.close_code == 4100
    assert websocket.close_reason == "slow consumer: fell too far behind"
    assert all(f.get("event") != "live" for f in frames)


async def test_subscribe_since_is_capped(server: ServerProcess) -> None:
    token = server.token("backend", "service", tenant="acme")
    since = {f"chat.r{n}": (0, "") for n in range(129)}
    async with server.channel() as channel:
        stream = Stream(channel, token, ["chat.*"], since=since)
        error = await stream.ended()
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "since: 129 rooms given; the limit is 128"


async def test_presence_pages_with_tokens() -> None:
    with serving(
        env={"ROOMCAST_WS_MAX_REPLY_BYTES": "300", "ROOMCAST_MAX_REPLY_BYTES": "300"}
    ) as server:
        members = []
        for n in range(7):
            member = await WsClient.connect(server, server.token(f"u{n}", "user", tenant="acme"))
            await member.next("connection.confirmed")
            await member.request({"type": "join_room", "room": "chat.crowd"})
            members.append(member)
        seen: list[str] = []
        frame: dict[str, Any] = {"type": "presence", "room": "chat.crowd"}
        pages = 0
        while True:
            reply = await members[0].request(frame)
            assert reply["type"] == "presence", reply
            pages += 1
            seen += [m["user_id"] for m in reply["members"]]
            if "next_page_token" not in reply:
                break
            frame["page_token"] = reply["next_page_token"]
        assert seen == [f"u{n}" for n in range(7)]
        assert pages > 1
        bad = await members[0].request(
            {"type": "presence", "room": "chat.crowd", "page_token": "nope"}
        )
        assert (bad["type"], bad["code"]) == ("error", "bad_request")
        service = bearer(server.token("backend", "service", tenant="acme"))
        async with server.channel() as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            request = admin_pb2.GetPresenceRequest(room="chat.crowd")
            listed: list[str] = []
            while True:
                response = await admin.GetPresence(request, metadata=service)
                listed += [m.user_id for m in response.members]
                if not response.next_page_token:
                    break
                request.page_token = response.next_page_token
            assert listed == seen
        for member in members:
            await member.close()


def scrape(server: ServerProcess, token: str) -> str:
    """The server's /metrics exposition."""
    request = urllib.request.Request(f"http://{server.http}/metrics")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5 * UNIT) as response:
        return str(response.read().decode())


async def test_over_the_memory_ceiling_the_node_refuses_instead_of_growing() -> None:
    # A ceiling under what any process holds: the guard is over at its first sample.
    with serving(
        env={"ROOMCAST_MEMORY_LIMIT_BYTES": str(MiB), "ROOMCAST_METRICS_TOKEN": "scrape"}
    ) as server:
        # The guard is over from its first sample, 0.25 s after the start.
        token = server.token("alice", "user", tenant="acme")
        client = await WsClient.connect(server, token, via="query")
        assert await client.closed() == 1013
        assert "memory budget" in client.close_reason
        service = bearer(server.token("backend", "service", tenant="acme"))
        async with server.channel() as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.GetHistory(admin_pb2.GetHistoryRequest(room="chat.x"), metadata=service)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.value.details() == (
                "history: the server is over its memory budget; retry later"
            )
            # Live traffic goes on.
            realtime = realtime_pb2.PublishRequest(room="chat.x", event="e")
            stub = channel.unary_unary(
                "/roomcast.v1.RealtimeService/Publish",
                request_serializer=realtime_pb2.PublishRequest.SerializeToString,
                response_deserializer=realtime_pb2.PublishResponse.FromString,
            )
            assert (await stub(realtime, metadata=service)).offset == 1
        # Both refusals are counted.
        exposition = await asyncio.to_thread(scrape, server, "scrape")
        assert re.search(r"^roomcast_overloaded_total\{[^}]*\} 2\.0$", exposition, re.M)
