"""gRPC ingress benchmark: unary Publish calls/s and PublishBatch events/s.

Starts a real `roomcast serve` (memory broker) on a free port, attaches one
Subscribe stream to the room (in its own process, counting what arrives), and
drives load from separate load-generator processes:

- unary: ``--in-flight`` concurrent Publish calls (default 64), split across
  ``--clients`` processes, for ``--seconds``;
- batch: PublishBatch calls of ``--batch`` events, a few in flight.

Prints calls/s, events/s, what the subscriber received, and the server's CPU
seconds, so figures can be read per server CPU-second as well.

    .venv/bin/python benchmarks/grpc_ingress.py [--seconds 10] [--clients 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import uvloop

from roomcast.auth import mint_token
from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

ROOM = "global.bench"
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    process: subprocess.Popen[str]
    target: str
    secret: str


def start_server() -> Server:
    secret = secrets.token_urlsafe(32)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    environment |= {"ROOMCAST_JWT_SECRET": secret}
    process = subprocess.Popen(
        [sys.executable, "-m", "roomcast", "serve", "--host", "127.0.0.1", "--grpc-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
        cwd=REPOSITORY,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("roomcast ready: grpc="):
            target = line.split("grpc=", 1)[1].split()[0]
            return Server(process, target, secret)
    raise RuntimeError("server did not start")


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def subscriber(target: str, token: str, ready: mp.Event, stop: mp.Event, counts: mp.Array) -> None:
    """Count events on one Subscribe stream until told to stop."""
    channel = grpc.insecure_channel(target)
    stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
    call = stub.Subscribe(realtime_pb2.SubscribeRequest(rooms=[ROOM]), metadata=metadata(token))
    received = 0
    for messages, response in enumerate(call, start=1):
        if response.HasField("subscribed"):
            ready.set()
        received += len(response.events)
        counts[0], counts[1] = received, messages
        if stop.is_set():
            break
    call.cancel()


async def _unary(target: str, token: str, in_flight: int, seconds: float) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        request = realtime_pb2.PublishRequest(room=ROOM, event="bench.tick")
        request.payload.update({"n": 1, "text": "hello"})
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
        item = realtime_pb2.PublishRequest(room=ROOM, event="bench.tick")
        item.payload.update({"n": 1, "text": "hello"})
        request = realtime_pb2.PublishBatchRequest(events=[item] * size)
        deadline = time.monotonic() + seconds
        done = 0

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await stub.PublishBatch(request, metadata=metadata(token))
                done += sum(1 for r in response.results if r.HasField("published"))

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return done


def load(
    kind: str, target: str, token: str, arg: int, in_flight: int, seconds: float, out: mp.Queue
) -> None:
    """One load-generator process."""
    if kind == "unary":
        out.put(uvloop.run(_unary(target, token, in_flight, seconds)))
    else:
        out.put(uvloop.run(_batch(target, token, arg, in_flight, seconds)))


def run_phase(
    server: Server, token: str, kind: str, clients: int, in_flight: int, batch: int, seconds: float
) -> tuple[int, float, float]:
    """Run one phase; returns (events published, wall seconds, server CPU seconds)."""
    server_process = psutil.Process(server.process.pid)
    cpu_before = sum(server_process.cpu_times()[:2])
    out: mp.Queue = mp.Queue()
    per_client = max(1, in_flight // clients)
    workers = [
        mp.Process(target=load, args=(kind, server.target, token, batch, per_client, seconds, out))
        for _ in range(clients)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    total = sum(out.get() for _ in workers)
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    cpu = sum(server_process.cpu_times()[:2]) - cpu_before
    return total, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent unary calls")
    parser.add_argument("--batch", type=int, default=1000, help="events per PublishBatch")
    parser.add_argument("--batch-in-flight", type=int, default=4)
    args = parser.parse_args()

    server = start_server()
    token = mint_token(server.secret, subject="bench", roles=["service"], ttl=3600)
    ready, stop = mp.Event(), mp.Event()
    counts = mp.Array("q", 2)
    reader = mp.Process(target=subscriber, args=(server.target, token, ready, stop, counts))
    reader.start()
    try:
        if not ready.wait(20):
            raise RuntimeError("subscriber did not attach")
        print(f"roomcast gRPC ingress, {os.cpu_count()} cores, one Subscribe stream attached")
        unary, wall, cpu = run_phase(
            server, token, "unary", args.clients, args.in_flight, 0, args.seconds
        )
        print(
            f"unary Publish, {args.in_flight} in flight ({args.clients} client processes): "
            f"{unary / wall:,.0f} calls/s; server CPU {cpu / wall * 100:.0f}% "
            f"({unary / max(cpu, 1e-9):,.0f} calls per server CPU-second)"
        )
        received_before = counts[0]
        batched, wall, cpu = run_phase(
            server,
            token,
            "batch",
            min(args.clients, args.batch_in_flight),
            args.batch_in_flight,
            args.batch,
            args.seconds,
        )
        deadline = time.monotonic() + 10
        while counts[0] - received_before < batched and time.monotonic() < deadline:
            time.sleep(0.05)
        received = counts[0] - received_before
        print(
            f"PublishBatch of {args.batch}, {args.batch_in_flight} in flight: "
            f"{batched / wall:,.0f} events/s; server CPU {cpu / wall * 100:.0f}% "
            f"({batched / max(cpu, 1e-9):,.0f} events per server CPU-second)"
        )
        print(
            f"subscriber received {received:,} of {batched:,} batched events "
            f"in {counts[1]:,} stream messages in all"
        )
    finally:
        stop.set()
        reader.terminate()
        server.process.terminate()
        server.process.wait(15)


if __name__ == "__main__":
    main()
