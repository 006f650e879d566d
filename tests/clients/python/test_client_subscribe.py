"""Subscriptions: replay with since, gaps, and resuming by themselves after a break."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from support.clients import Connect, Take
from support.ports import free_port
from support.server import ServerProcess, start_server
from support.waiting import UNIT

from roomcast_client import (
    Event,
    Gap,
    PermissionDenied,
    Position,
    PublishItem,
    Reconnect,
    ResourceExhausted,
    RoomcastClient,
    Unavailable,
)

QUICK = Reconnect(initial_delay=0.05 * UNIT, max_delay=0.2 * UNIT)


def offsets(items: list[Event | Gap]) -> list[int]:
    return [item.offset for item in items if isinstance(item, Event)]


async def test_since_replays_what_was_missed_then_goes_live(
    connect: Connect, service: str, unique: Callable[[str], str], take: Take
) -> None:
    room = unique("global.since")
    client = connect(service)
    first = await client.publish(room, "e", {"n": 1})
    for n in (2, 3):
        await client.publish(room, "e", {"n": n})
    async with client.subscribe(room, since={room: first.position}) as events:
        await client.publish(room, "e", {"n": 4})
        items = await take(events, 3)
        assert events.positions == {("", room): Position(4, first.epoch)}
    assert offsets(items) == [2, 3, 4]
    assert [item.payload["n"] for item in items if isinstance(item, Event)] == [2, 3, 4]


async def test_a_position_that_cannot_be_served_is_a_gap(
    connect: Connect, service: str, unique: Callable[[str], str], take: Take
) -> None:
    room = unique("global.gap")
    client = connect(service)
    published = await client.publish(room, "e")
    async with client.subscribe(["global.*"], since={room: Position(7, "stale")}) as events:
        live = await client.publish(room, "e")
        gap, event = await take(events, 2)
    assert isinstance(gap, Gap)
    assert (gap.room, gap.tenant_id) == (room, "")
    assert gap.position == published.position
    assert "epoch" in gap.reason
    assert isinstance(event, Event)
    assert event.id == live.id


async def test_a_refused_subscription_raises_at_once(
    connect: Connect, server: ServerProcess
) -> None:
    user = connect(server.token("alice", "user", tenant="acme"), reconnect=QUICK)
    with pytest.raises(PermissionDenied, match=r"platform\.admins"):
        async with user.subscribe("platform.admins"):
            pass
    with pytest.raises(ResourceExhausted, match="the limit is 128"):
        await user.subscribe([f"global.r{i}" for i in range(129)]).ready()


async def test_aclose_from_another_task_ends_the_iteration(connect: Connect, service: str) -> None:
    client = connect(service)
    subscription = client.subscribe("global.*")
    await subscription.ready()

    async def read_all() -> list[Event | Gap]:
        return [item async for item in subscription]

    reader = asyncio.create_task(read_all())
    await asyncio.sleep(0.1 * UNIT)
    await subscription.aclose()
    assert await asyncio.wait_for(reader, 5 * UNIT) == []


async def test_closing_the_client_closes_its_subscriptions(connect: Connect, service: str) -> None:
    client = connect(service)
    subscription = client.subscribe("global.*")
    await subscription.ready()
    await client.close()
    assert [item async for item in subscription] == []


# --- Breaks: a server that restarts, a server that cuts off a slow reader ------


@pytest.fixture
async def restartable() -> AsyncIterator[list[ServerProcess]]:
    """Servers started one after the other on the same port; the last is running."""
    servers = [start_server("--grpc-port", str(free_port()))]
    yield servers
    for process in servers:
        await stop(process)


async def stop(process: ServerProcess) -> int:
    """Stop a server while this loop keeps running, so that clients see it go."""
    return await asyncio.to_thread(process.stop)


async def test_a_restarted_server_is_resubscribed_and_lost_history_is_a_gap(
    connect: Connect, restartable: list[ServerProcess], take: Take
) -> None:
    old = restartable[0]
    token = old.token("backend", "service")
    client = connect(token, target=old.target, reconnect=QUICK)
    # No tenant_id: "chat.*" spans tenants, and "chat.lobby" of acme cannot
    # be named in the since of such a stream.
    async with client.subscribe(["global.*", "chat.*"]) as events:
        await client.publish("global.lobby", "before")
        await client.publish("chat.lobby", "before", tenant_id="acme")
        before = await take(events, 2)
        assert await stop(old) == 0, old.log
        port = old.target.rsplit(":", 1)[1]
        restartable.append(await asyncio.to_thread(start_server, "--grpc-port", port))
        gaps = await take(events, 2, within=20)
        assert events.reconnects >= 1
        after = await client.publish("global.lobby", "after")
        [event] = await take(events, 1)
    assert offsets(before) == [1, 1]
    assert all(isinstance(gap, Gap) for gap in gaps)
    by_room = {gap.room: gap for gap in gaps if isinstance(gap, Gap)}
    assert set(by_room) == {"global.lobby", "chat.lobby"}
    assert "cannot resume" in by_room["chat.lobby"].reason
    assert by_room["chat.lobby"].tenant_id == "acme"
    assert by_room["global.lobby"].reason  # the server's words: the history was reset
    assert isinstance(event, Event)
    assert event.id == after.id
    assert event.offset == 1


async def test_a_server_that_never_returns_ends_the_iteration(
    connect: Connect, restartable: list[ServerProcess], take: Take
) -> None:
    server = restartable[0]
    gives_up = Reconnect(initial_delay=0.01, max_delay=0.05, max_attempts=3)
    client = connect(server.token("backend", "service"), target=server.target, reconnect=gives_up)
    async with client.subscribe("global.*") as events:
        assert await stop(server) == 0
        with pytest.raises(Unavailable):
            await take(events, 1, within=10)
        assert events.reconnects == 3


async def test_a_handler_whose_subscription_gives_up_reports_why(
    connect: Connect, restartable: list[ServerProcess]
) -> None:
    server = restartable[0]
    gives_up = Reconnect(initial_delay=0.01, max_delay=0.05, max_attempts=2)
    client = connect(server.token("backend", "service"), target=server.target, reconnect=gives_up)

    async def handler(event: Event) -> None:
        pass

    handle = await client.subscribe_to_events("global.*", handler)
    assert await stop(server) == 0
    with pytest.raises(Unavailable):
        await asyncio.wait_for(handle.wait(), 10 * UNIT)
    assert handle.done()
    assert isinstance(handle.error, Unavailable)


BULK_POLICY = """
[[rooms]]
pattern = "bulk.{id}"
scope = "platform"
subscribe = ["platform_service"]
publish = ["platform_service"]
history_size = 20000
history_ttl_seconds = 600
"""


@pytest.fixture(scope="module")
async def small_buffer_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ServerProcess]:
    """A server that cuts off a reader 256 KiB behind, with rooms that keep long histories."""
    policy: Path = tmp_path_factory.mktemp("policy") / "bulk.toml"
    policy.write_text(BULK_POLICY)  # noqa: ASYNC240  # a few bytes, before the loop has work
    process = start_server(
        "--policy", str(policy), env={"ROOMCAST_SUBSCRIBER_BUFFER_BYTES": str(256 * 1024)}
    )
    yield process
    assert await stop(process) == 0, process.log


@pytest.fixture
async def bulk_client(small_buffer_server: ServerProcess) -> AsyncIterator[RoomcastClient]:
    token = small_buffer_server.token("backend", "service")
    async with RoomcastClient(small_buffer_server.target, token, reconnect=QUICK) as client:
        yield client


async def test_a_slow_reader_cut_off_by_the_server_resumes_without_loss(
    bulk_client: RoomcastClient, small_buffer_server: ServerProcess, take: Take
) -> None:
    # ~48 MB of events, published without reading: far more than the client
    # buffers (1024 events), the HTTP/2 windows (4 MiB) and the sockets hold,
    # so the server ends the stream; the subscription resumes from history.
    # Each batch stays under the server's buffer: a larger burst would cut
    # off even a reader that keeps up.
    room, total, batch, blob = "bulk.firehose", 3000, 10, "x" * 16_000
    async with bulk_client.subscribe(room) as events:
        for start in range(0, total, batch):
            await bulk_client.publish_batch(
                [
                    PublishItem(room, "e", {"i": i, "blob": blob})
                    for i in range(start, start + batch)
                ]
            )
        items = await take(events, total, within=60)
        assert events.reconnects >= 1, "the server never cut the reader off"
    assert not [item for item in items if isinstance(item, Gap)]
    assert offsets(items) == list(range(1, total + 1))
    assert [item.payload["i"] for item in items if isinstance(item, Event)] == list(range(total))
