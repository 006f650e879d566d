"""gRPC ingress benchmark: unary Publish calls/s and PublishBatch events/s.

Starts a real `roomcast serve` (memory broker) on a free port, attaches one
Subscribe stream to the room (in its own process, checking that offsets
arrive without a gap), and drives load with two load generators:

- ``h2load`` (Debian package ``nghttp2-client``): a C HTTP/2 load tool sending
  gRPC-framed requests. It costs the machine little, so the figure is the
  server's capacity. It cannot read gRPC statuses, so success is proven by
  the room's offsets: every stored event takes the next offset, and the
  benchmark compares how far the offset moved with what h2load sent.
- Python grpcio clients (``--clients`` processes): what a Python backend
  would see on the same 2 cores, where the clients take CPU from the server.

Prints calls/s (or events/s), the server's CPU use, and what the subscriber
received.

    .venv/bin/python benchmarks/grpc_ingress.py [--seconds 10] [--load both|h2load|grpcio]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import psutil
import uvloop
from fanout_processes import start_redis, start_roomcast

from roomcast.auth import mint_token
from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

ROOM = "global.bench"
SERVICE = "/roomcast.v1.RealtimeService"


@dataclass
class Server:
    process: subprocess.Popen[str]
    target: str
    token: str


@dataclass
class Phase:
    """What one load phase achieved."""

    sent: int  # calls (unary) or events (batch) the load generator completed
    stored: int  # how far the room's offset moved
    wall: float
    server_cpu: float


def start_server(settings: dict[str, str]) -> Server:
    node = start_roomcast(settings)
    token = mint_token(node.secret, subject="bench", roles=["service"], ttl=3600)
    return Server(node.process, node.grpc, token)


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def tick() -> realtime_pb2.PublishRequest:
    """The event every benchmark call publishes."""
    request = realtime_pb2.PublishRequest(room=ROOM, event="bench.tick")
    request.payload.update({"n": 1, "text": "hello"})
    return request


def subscriber(target: str, token: str, ready: mp.Event, stop: mp.Event, counts: mp.Array) -> None:
    """Count events on one Subscribe stream; count offset gaps too."""
    channel = grpc.insecure_channel(target)
    stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
    call = stub.Subscribe(realtime_pb2.SubscribeRequest(rooms=[ROOM]), metadata=metadata(token))
    received = gaps = last = 0
    for messages, response in enumerate(call, start=1):
        if response.HasField("subscribed"):
            ready.set()
        for event in response.events:
            if last and event.offset != last + 1:
                gaps += 1
            last = event.offset
        received += len(response.events)
        counts[0], counts[1], counts[2] = received, messages, gaps
        if stop.is_set():
            break
    call.cancel()


def top_offset(server: Server) -> int:
    """The room's newest offset (publishes a marker event, which takes one)."""
    with grpc.insecure_channel(server.target) as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        return int(stub.Publish(tick(), metadata=metadata(server.token)).offset)


def measure(server: Server, run: Callable[[], int]) -> Phase:
    """Run one load phase; its figures, with the offsets it moved."""
    process = psutil.Process(server.process.pid)
    before = top_offset(server)
    cpu_before = sum(process.cpu_times()[:2])
    started = time.perf_counter()
    sent = run()
    wall = time.perf_counter() - started
    cpu = sum(process.cpu_times()[:2]) - cpu_before
    stored = top_offset(server) - before - 1
    return Phase(sent, stored, wall, cpu)


# -- h2load --------------------------------------------------------------------


def h2load(
    target: str,
    token: str,
    method: str,
    message: bytes,
    connections: int,
    streams: int,
    seconds: float,
) -> int:
    """Send ``message`` to ``method`` at ``target`` for ``seconds``; the calls that succeeded."""
    with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
        # gRPC length-prefixed message: compressed flag, 4-byte length, message.
        body.write(b"\0" + struct.pack(">I", len(message)) + message)
        body.flush()
        output = subprocess.run(
            [
                "h2load",
                f"--duration={seconds:g}",
                f"--clients={connections}",
                f"--max-concurrent-streams={streams}",
                f"--data={body.name}",
                "--header=content-type: application/grpc",
                "--header=te: trailers",
                f"--header=authorization: Bearer {token}",
                f"http://{target}{SERVICE}/{method}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    found = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", output)
    if found is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    return int(found[2])


# -- grpcio clients ------------------------------------------------------------


async def _unary(target: str, token: str, in_flight: int, seconds: float) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        request = tick()
        deadline = time.monotonic() + seconds
        done = 0

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await stub.Publish(request, metadata=metadata(token))
                done += 1

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return done


async def _batch(target: str, token: str, size: int, in_flight: int, seconds: float) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        request = realtime_pb2.PublishBatchRequest(events=[tick()] * size)
        deadline = time.monotonic() + seconds
        done = 0

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await stub.PublishBatch(request, metadata=metadata(token))
                done += sum(1 for r in response.results if r.HasField("published"))

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return done


def _load(
    kind: str, target: str, token: str, size: int, in_flight: int, seconds: float, out: mp.Queue
) -> None:
    """One grpcio load-generator process."""
    if kind == "unary":
        out.put(uvloop.run(_unary(target, token, in_flight, seconds)))
    else:
        out.put(uvloop.run(_batch(target, token, size, in_flight, seconds)))


def grpcio_clients(
    server: Server, kind: str, clients: int, in_flight: int, size: int, seconds: float
) -> int:
    out: mp.Queue = mp.Queue()
    per_client = max(1, in_flight // clients)
    workers = [
        mp.Process(
            target=_load, args=(kind, server.target, server.token, size, per_client, seconds, out)
        )
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    total = sum(out.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total


# -- report --------------------------------------------------------------------


def report(label: str, unit: str, phase: Phase, events_per_call: int, in_flight: int) -> None:
    """Print a phase; its events must all be stored, and no more than were in flight at the end."""
    events = phase.sent * events_per_call
    # Calls still in flight when the load generator stopped complete on the
    # server too, but the load generator did not count them.
    lost_or_extra = phase.stored - events
    verdict = (
        f"all {events:,} stored"
        if 0 <= lost_or_extra <= in_flight * events_per_call
        else f"MISMATCH: {events:,} acknowledged, {phase.stored:,} stored"
    )
    print(
        f"  {label}: {phase.sent / phase.wall:,.0f} {unit}/s"
        + (f" = {events / phase.wall:,.0f} events/s" if events_per_call > 1 else "")
        + f"; server CPU {phase.server_cpu / phase.wall * 100:.0f}%"
        + f" ({events / max(phase.server_cpu, 1e-9):,.0f} events per server CPU-second); {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--load", choices=["both", "h2load", "grpcio"], default="both")
    parser.add_argument("--clients", type=int, default=2, help="grpcio load processes")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent unary calls")
    parser.add_argument("--batch", type=int, default=1000, help="events per PublishBatch")
    parser.add_argument("--batch-in-flight", type=int, default=4)
    parser.add_argument(
        "--broker",
        choices=["memory", "redis"],
        default="memory",
        help="redis: a redis-server of the benchmark's own, on a free port",
    )
    args = parser.parse_args()
    loads = ["h2load", "grpcio"] if args.load == "both" else [args.load]
    if "h2load" in loads and shutil.which("h2load") is None:
        if args.load == "h2load":
            sys.exit("h2load not found: apt-get install nghttp2-client")
        print("h2load not found (apt-get install nghttp2-client); grpcio clients only")
        loads.remove("h2load")

    settings, redis = {}, None
    if args.broker == "redis":
        redis = start_redis()
        settings["broker"] = f"redis://127.0.0.1:{redis.port}/0"
    server = start_server(settings)
    ready, stop = mp.Event(), mp.Event()
    counts = mp.Array("q", 3)
    reader = mp.Process(target=subscriber, args=(server.target, server.token, ready, stop, counts))
    reader.start()
    try:
        if not ready.wait(20):
            raise RuntimeError("subscriber did not attach")
        print(
            f"roomcast gRPC ingress ({args.broker} broker), {os.cpu_count()} cores,"
            " one Subscribe stream attached"
        )
        unary = tick().SerializeToString()
        batch = realtime_pb2.PublishBatchRequest(events=[tick()] * args.batch).SerializeToString()
        streams = max(1, args.in_flight // 4)
        for load in loads:
            print(f"{load}:")
            if load == "h2load":
                phase = measure(
                    server,
                    lambda: h2load(
                        server.target, server.token, "Publish", unary, 4, streams, args.seconds
                    ),
                )
            else:
                phase = measure(
                    server,
                    lambda: grpcio_clients(
                        server, "unary", args.clients, args.in_flight, 0, args.seconds
                    ),
                )
            report(f"unary Publish, {args.in_flight} in flight", "calls", phase, 1, args.in_flight)
            if load == "h2load":
                phase = measure(
                    server,
                    lambda: h2load(
                        server.target,
                        server.token,
                        "PublishBatch",
                        batch,
                        2,
                        args.batch_in_flight // 2,
                        args.seconds,
                    ),
                )
                report(
                    f"PublishBatch of {args.batch}, {args.batch_in_flight} in flight",
                    "calls",
                    phase,
                    args.batch,
                    args.batch_in_flight,
                )
            else:
                phase = measure(
                    server,
                    lambda: grpcio_clients(
                        server,
                        "batch",
                        min(args.clients, args.batch_in_flight),
                        args.batch_in_flight,
                        args.batch,
                        args.seconds,
                    ),
                )
                # grpcio clients count events, not calls.
                report(
                    f"PublishBatch of {args.batch}, {args.batch_in_flight} in flight",
                    "events",
                    phase,
                    1,
                    0,
                )
        # Every event the room ever held, markers and calls still in flight
        # when a phase ended included: the room is new with the server. The
        # pause lets calls the load generator left in flight finish first, so
        # none takes an offset after the marker.
        time.sleep(1.0)
        published = top_offset(server)
        deadline = time.monotonic() + 20
        while counts[0] < published and time.monotonic() < deadline:
            time.sleep(0.05)
        print(
            f"subscriber received {counts[0]:,} of {published:,} events "
            f"in {counts[1]:,} stream messages; offset gaps: {counts[2]}"
        )
    finally:
        stop.set()
        reader.terminate()
        server.process.terminate()
        server.process.wait(15)
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    main()
