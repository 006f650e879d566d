"""``roomcast serve --workers 2``: two node processes behind one pair of ports.

The workers bind the same ports with SO_REUSEPORT, so the kernel spreads
new connections across them; the session's Redis (under a fresh prefix)
makes them one platform. Which worker a connection lands on is the
kernel's choice, so the tests open enough connections to reach both and
ask each worker (GetMetrics) what it holds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import pytest
from support.cluster import FAST, metrics, node_id, prefixed
from support.grpc import bearer, payload
from support.redis import RedisProcess
from support.server import ServerProcess, start_server
from support.tokens import SECRET
from support.waiting import UNIT, eventually
from support.ws import WsClient, join, websockets

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

CLIENTS = 16  # all on one worker: a chance of 1 in 2**15


@pytest.fixture(scope="module")
def workers(platform_redis: RedisProcess) -> Iterator[ServerProcess]:
    """A parent and its two workers (the last test stops them).

    A short shutdown grace: a Subscribe call now and then outlives its
    stream's end until the grace is over (seen on one node too), and the
    drain test must not wait the default 10 s for it.
    """
    env = {**FAST, "ROOMCAST_SHUTDOWN_GRACE": "2"}
    server = start_server("--broker", prefixed(platform_redis.url), "--workers", "2", env=env)
    yield server
    server.stop()


@pytest.fixture
async def per_worker(workers: ServerProcess) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    """A client channel to each worker, by worker node id."""
    found: dict[str, grpc.aio.Channel] = {}
    spare: list[grpc.aio.Channel] = []
    for _ in range(40):
        # Its own subchannel pool: a new TCP connection, which the kernel
        # gives to either worker.
        channel = grpc.aio.insecure_channel(
            workers.target, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        worker = (await metrics(workers, channel=channel)).node_id
        if worker in found:
            spare.append(channel)
        else:
            found[worker] = channel
        if len(found) == 2:
            break
    assert len(found) == 2, f"every connection landed on {list(found)}"
    yield found
    for channel in [*found.values(), *spare]:
        await channel.close()


def worker_ids(server: ServerProcess) -> list[str]:
    return [f"{node_id(server)}-w{index}" for index in range(2)]


async def test_both_workers_serve_and_a_publish_through_one_reaches_the_others_members(
    workers: ServerProcess,
    per_worker: dict[str, grpc.aio.Channel],
    unique: Callable[[str], str],
) -> None:
    assert sorted(per_worker) == worker_ids(workers)
    tenant, room = unique("t"), unique("chat.workers")

    async def registered() -> bool:
        return sorted((await metrics(workers, cluster=True)).nodes) == worker_ids(workers)

    await eventually(registered)
    async with websockets() as connect:
        members = [await connect(workers, f"u{n}", tenant=tenant) for n in range(CLIENTS)]
        for member in members:
            await join(member, room)

        async def spread() -> dict[str, int] | None:
            counts = {
                worker: (await metrics(workers, channel=channel)).connections_by_tenant.get(
                    tenant, 0
                )
                for worker, channel in per_worker.items()
            }
            return counts if sum(counts.values()) == CLIENTS else None

        counts = await eventually(spread)
        assert all(counts.values()), f"connections all on one worker: {counts}"
        # One publish through each worker: every member, on either, gets both.
        service = bearer(workers.token("backend", "service", tenant=tenant))
        ids = []
        for worker in sorted(per_worker):
            stub = realtime_pb2_grpc.RealtimeServiceStub(per_worker[worker])
            published = await stub.Publish(
                realtime_pb2.PublishRequest(room=room, event="e", payload=payload(via=worker)),
                metadata=service,
            )
            ids.append(published.id)
        for member in members:
            await member.wait(lambda m=member: len(m.of_type("event")) >= 2 or None)
            assert [e["id"] for e in member.of_type("event")] == ids


def test_workers_with_the_memory_broker_are_refused_in_one_line() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    environment["ROOMCAST_JWT_SECRET"] = SECRET
    result = subprocess.run(
        [sys.executable, "-m", "roomcast", "serve", "--workers", "2", "--grpc-port", "0"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=20 * UNIT,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "roomcast: --workers 2 needs a shared broker (--broker redis://...): "
        "the memory broker keeps rooms inside one process"
    ]


async def test_sigterm_to_the_parent_drains_every_worker(
    workers: ServerProcess, per_worker: dict[str, grpc.aio.Channel]
) -> None:
    clients = [
        await WsClient.connect(workers, workers.token(f"d{n}", "user", tenant="acme"))
        for n in range(CLIENTS)
    ]
    for client in clients:
        await client.next("connection.confirmed")
    streams = [
        realtime_pb2_grpc.RealtimeServiceStub(channel).Subscribe(
            realtime_pb2.SubscribeRequest(rooms=["global.drain"]),
            metadata=bearer(workers.token("svc", "service")),
        )
        for channel in per_worker.values()
    ]
    for stream in streams:
        assert (await stream.read()).HasField("subscribed")
    # In a thread: the clients must answer the workers' closing handshakes meanwhile.
    stopping = asyncio.create_task(asyncio.to_thread(workers.stop))
    for client in clients:
        assert await client.closed(5 * UNIT) == 4200  # "server restarting": resume elsewhere
    for stream in streams:
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await stream.read()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await asyncio.wait_for(stopping, 10 * UNIT) == 0, workers.log
    assert workers.log.count("roomcast.server: stopped") == 2
