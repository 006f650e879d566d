"""The processes of the fan-out benchmark: servers, load generators, publisher.

- :func:`start_roomcast`: a real ``roomcast serve`` (memory broker) on free
  ports, with a fresh JWT secret;
- :func:`start_reference`: the bare ``websockets.broadcast()`` server
  (``broadcast_reference.py``);
- :class:`LoadGenerator`: a ``ws_load`` process holding subscribers;
- :func:`publisher`: the gRPC publisher's process.

Each runs in a process of its own so that psutil can tell their CPU apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import ws_load
from pacing import schedule

__all__ = [
    "SPAWN",
    "LoadGenerator",
    "Server",
    "open_connections",
    "publisher",
    "samples",
    "start_redis",
    "start_reference",
    "start_roomcast",
    "totals",
]

REPOSITORY = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent
TENANT = "bench"
SPAWN = mp.get_context("spawn")


# -- servers -------------------------------------------------------------------


@dataclass
class Server:
    """A server process under test."""

    name: str
    process: subprocess.Popen[str]
    log: IO[str]
    host: str
    port: int  # the WebSocket port
    grpc: str = ""  # roomcast's gRPC target
    secret: str = ""

    @property
    def psutil(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _ready_line(process: subprocess.Popen[str], prefix: str, log: IO[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    log.seek(0)
    raise RuntimeError(f"server did not start:\n{log.read()[-3000:]}")


def _endpoint(line: str, key: str) -> tuple[str, int]:
    host, port = line.split(f"{key}=", 1)[1].split()[0].rsplit(":", 1)
    return host, int(port)


def start_roomcast(
    settings: Mapping[str, str] | None = None, *, name: str = "roomcast", secret: str = ""
) -> Server:
    """A ``roomcast serve`` on free ports.

    Args:
        settings: ``ROOMCAST_*`` environment settings (by field name, e.g.
            ``{"metrics": "false", "broker": "redis://..."}``); the caller's
            own ``ROOMCAST_*`` variables never reach the server.
        name: what the reports call it.
        secret: the JWT secret (nodes of one platform share it); a fresh one
            when empty.
    """
    secret = secret or secrets.token_urlsafe(32)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    environment |= {"ROOMCAST_JWT_SECRET": secret}
    environment |= {f"ROOMCAST_{key.upper()}": value for key, value in (settings or {}).items()}
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (closed by Server.stop)
    command = ["-m", "roomcast", "serve", "--host", "127.0.0.1", "--grpc-port", "0"]
    process = subprocess.Popen(
        [sys.executable, *command, "--http-port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=environment,
        cwd=REPOSITORY,
    )
    line = _ready_line(process, "roomcast ready:", log)
    grpc_host, grpc_port = _endpoint(line, "grpc")
    host, port = _endpoint(line, "http")
    return Server(name, process, log, host, port, f"{grpc_host}:{grpc_port}", secret)


def start_redis() -> Server:
    """A ``redis-server`` of the benchmark's own on a free port (nothing kept on disk)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (closed by Server.stop)
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"redis-server did not start:\n{log.read()[-3000:]}")
        time.sleep(0.05)
    return Server("redis", process, log, "127.0.0.1", port)


def start_reference(loop: str, text: str) -> Server:
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (closed by Server.stop)
    script = str(BENCHMARKS / "broadcast_reference.py")
    process = subprocess.Popen(
        [sys.executable, script, "--loop", loop, "--text", text],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    host, port = _endpoint(_ready_line(process, "reference ready:", log), "http")
    # The reference checks no token; any secret will do for the load generator.
    return Server("reference", process, log, host, port, secret=secrets.token_urlsafe(32))


# -- load generators -----------------------------------------------------------


class LoadGenerator:
    """A ``ws_load`` process holding some of the subscribers."""

    def __init__(self) -> None:
        self._control, child = SPAWN.Pipe()
        self.process = SPAWN.Process(target=ws_load.run, args=(child,), daemon=True)
        self.process.start()
        self.psutil = psutil.Process(self.process.pid)

    def ask(self, command: dict[str, Any], timeout: float = 30) -> Any:
        self._control.send(command)
        return self.reply(timeout)

    def reply(self, timeout: float) -> Any:
        if not self._control.poll(timeout):
            raise RuntimeError(f"load generator did not answer within {timeout:g} s")
        return self._control.recv()

    def totals(self) -> ws_load.Totals:
        return self.ask({"do": "totals"})  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self.ask({"do": "close"}, timeout=10)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


def open_connections(
    server: Server, count: int, room: str | None, sample_every: int, processes: int
) -> tuple[list[LoadGenerator], float]:
    """Open ``count`` subscribers over ``processes`` load generators; seconds taken."""
    generators = [LoadGenerator() for _ in range(processes)]
    share = math.ceil(count / processes)
    started = time.perf_counter()
    for index, generator in enumerate(generators):
        first = index * share
        generator._control.send(
            {
                "do": "connect",
                "host": server.host,
                "port": server.port,
                "secret": server.secret,
                "tenant": TENANT,
                "first": first,
                "count": min(share, count - first),
                "room": room,
                "sample_every": sample_every,
                "concurrency": 100,
            }
        )
    ready, failures = 0, []
    for generator in generators:
        _, done, failed, _ = generator.reply(timeout=300)
        ready += done
        failures += failed
    if ready != count:
        raise RuntimeError(f"{server.name}: {ready} of {count} connections ready; {failures}")
    return generators, time.perf_counter() - started


def totals(generators: list[LoadGenerator]) -> ws_load.Totals:
    parts = [g.totals() for g in generators]
    return ws_load.Totals(*(sum(getattr(p, f) for p in parts) for f in vars(parts[0])))


def samples(generators: list[LoadGenerator]) -> list[tuple[int, int, int]]:
    return [s for g in generators for s in g.ask({"do": "samples"})]


# -- the gRPC publisher --------------------------------------------------------


def publisher(
    target: str, token: str, room: str, rate: float, seconds: float, text: str, out: Any
) -> None:
    """Publish ``rate`` events a second for ``seconds``.

    Puts ``"ready"`` on ``out`` once connected, then (published, failed,
    round trips in µs, how late each publish left in µs).
    """
    import grpc
    import uvloop

    from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

    async def run() -> tuple[int, int, list[int], list[int]]:
        metadata = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(target) as channel:
            await channel.channel_ready()
            stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
            out.put("ready")
            loop = asyncio.get_running_loop()
            failed = 0
            in_flight: set[asyncio.Task[Any]] = set()
            round_trips: list[int] = []
            late: list[int] = []  # how late each publish left (µs)

            async def publish(n: int, due: float) -> None:
                nonlocal failed
                late.append(int((time.monotonic() - due) * 1e6))
                request = realtime_pb2.PublishRequest(room=room, event="bench.tick")
                # When it was due (monotonic µs, exact in a Struct's double):
                # measuring from the schedule, a server that falls behind
                # shows it in the latency (no coordinated omission).
                request.payload.update({"t": int(due * 1e6), "n": n, "text": text})
                try:
                    await stub.Publish(request, metadata=metadata, timeout=60)
                except grpc.aio.AioRpcError:
                    failed += 1
                round_trips.append(int((time.monotonic() - due) * 1e6))

            n = 0
            async for n, due in schedule(rate, seconds):
                task = loop.create_task(publish(n, due))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.gather(*in_flight)
            return n - failed, failed, round_trips, late

    out.put(uvloop.run(run()))
