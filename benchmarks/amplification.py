"""History amplification: stalled readers that ask for the biggest replies, and the node's RSS.

The attack of the hardening issue, against one or more builds of roomcast
side by side: an ordinary user fills ``chat.big`` with 100 events of 60 KB
over the WebSocket bridge (four connections, in about a second); then
``--attackers`` connections (users of the same tenant, ten each, the
per-user limit) each send 40 ``{"type":"history","limit":1000}`` for that
room and never read again, through sockets with a 16 KiB receive window so
that what the server sends waits in its own buffers. For ``--seconds`` the
server's resident size is sampled every 50 ms, and every half second a
legitimate client connects and times its ``connection.confirmed``.

    .venv/bin/python benchmarks/amplification.py [--attackers 10 25 50] [--seconds 40]
        [--build before=/path/to/older/checkout] [--build after=.]

A build is a checkout whose ``src`` is put first on the server's
``PYTHONPATH`` (``git worktree add /tmp/before 66259d2`` makes one of an
older commit). Each build runs with its default settings. Builds alternate
per attacker count, so that the machine's noise falls on all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from fanout_processes import Server, start_roomcast
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from roomcast.auth import mint_token

EVENTS = 100
EVENT_BYTES = 60_000
REQUESTS = 40
PER_USER = 10
MiB = 1 << 20


@dataclass
class Outcome:
    """What one build did under one attack."""

    build: str
    attackers: int
    baseline: int = 0
    peak: int = 0
    connects: list[float] = field(default_factory=list)  # seconds; inf: timed out
    closes: dict[str, int] = field(default_factory=dict)  # as the attackers saw it
    slow_consumer_closes: int = 0  # the server's log: "closing connection ... with 4100"


def token(server: Server, user: str) -> str:
    return mint_token(server.secret, subject=user, tenant="acme", roles=["user"])


async def fill(server: Server) -> None:
    """chat.big: 100 events of 60 KB from mallory, over four connections."""

    async def one(numbers: range) -> None:
        async with connect(f"ws://{server.host}:{server.port}/ws", max_size=None) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token(server, "mallory")}))
            await ws.recv()
            await ws.send(json.dumps({"type": "join_room", "room": "chat.big", "id": "j"}))
            for n in numbers:
                frame = {"type": "send_message", "event": "e", "rooms": ["chat.big"], "id": n}
                frame["payload"] = {"n": n, "blob": "x" * EVENT_BYTES}
                await ws.send(json.dumps(frame))
            # Every frame answered (message_sent or error) before closing.
            answered = 0
            while answered < len(numbers):
                reply = json.loads(await ws.recv())
                answered += reply.get("id") in numbers
                if reply.get("type") == "error" and reply.get("id") in numbers:
                    raise RuntimeError(f"filling refused: {reply}")

    share = EVENTS // 4
    await asyncio.gather(*(one(range(i * share, (i + 1) * share)) for i in range(4)))


async def small_window(server: Server) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (server.host, server.port))
    return sock


async def attacker(server: Server, user: str) -> ClientConnection | None:
    """A connection that asks for the room's history 40 times, then never reads."""
    try:
        ws = await connect(
            f"ws://{server.host}:{server.port}/ws",
            max_queue=1,
            sock=await small_window(server),
            open_timeout=30,
            close_timeout=1,
        )
        await ws.send(json.dumps({"type": "auth", "token": token(server, user)}))
        await ws.recv()
        for _ in range(REQUESTS):
            await ws.send(json.dumps({"type": "history", "room": "chat.big", "limit": 1000}))
    except (OSError, ConnectionClosed, TimeoutError):
        return None
    return ws


async def legit_connect(server: Server) -> float:
    """Seconds from opening a connection to its ``connection.confirmed`` (inf past 10 s)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(10):
            async with connect(f"ws://{server.host}:{server.port}/ws") as ws:
                await ws.send(json.dumps({"type": "auth", "token": token(server, "alice")}))
                await ws.recv()
    except (TimeoutError, OSError, ConnectionClosed):
        return float("inf")
    return time.monotonic() - started


async def close_code(ws: ClientConnection | None) -> str:
    """How an attacker's connection ended, once it reads again (a second at most)."""
    if ws is None:
        return "refused"
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(1):
            async for _ in ws:
                pass
    if ws.close_code is None:
        await ws.close()
        return "open"
    return str(ws.close_code)


async def attack(server: Server, outcome: Outcome, seconds: float) -> None:
    process = psutil.Process(server.process.pid)
    await fill(server)
    outcome.baseline = outcome.peak = process.memory_info().rss
    users = [f"mallory{n // PER_USER}" for n in range(outcome.attackers)]
    attackers = asyncio.gather(*(attacker(server, user) for user in users))
    ends = time.monotonic() + seconds
    next_connect = 0.0
    probes: list[asyncio.Task[float]] = []
    while time.monotonic() < ends:
        with contextlib.suppress(psutil.Error):
            outcome.peak = max(outcome.peak, process.memory_info().rss)
        if time.monotonic() >= next_connect:
            probes.append(asyncio.create_task(legit_connect(server)))
            next_connect = time.monotonic() + 0.5
        await asyncio.sleep(0.05)
    outcome.connects = list(await asyncio.gather(*probes))
    codes = [await close_code(ws) for ws in await attackers]
    outcome.closes = {code: codes.count(code) for code in sorted(set(codes))}


def run(build: str, source: Path, attackers: int, seconds: float) -> Outcome:
    os.environ["PYTHONPATH"] = str(source / "src")
    server = start_roomcast(name=build)
    outcome = Outcome(build, attackers)
    try:
        asyncio.run(attack(server, outcome, seconds))
        server.log.seek(0)
        outcome.slow_consumer_closes = server.log.read().count(" with 4100")
    finally:
        server.stop()
    return outcome


def report(outcomes: list[Outcome]) -> None:
    print(
        f"{'build':<10} {'attackers':>9} {'RSS before':>11} {'peak RSS':>9} {'growth':>8}"
        f" {'connect p50':>12} {'connect max':>12} {'4100 closes':>12}  attackers saw"
    )
    for o in outcomes:
        done = sorted(o.connects)
        median = done[len(done) // 2] if done else float("nan")
        worst = done[-1] if done else float("nan")
        print(
            f"{o.build:<10} {o.attackers:>9} {o.baseline / MiB:>8.0f} MiB {o.peak / MiB:>5.0f} MiB"
            f" {(o.peak - o.baseline) / MiB:>4.0f} MiB {median * 1000:>9.0f} ms {worst:>10.1f} s "
            f" {o.slow_consumer_closes:>11}  {', '.join(f'{c}: {n}' for c, n in o.closes.items())}"
        )
    print("connect: a new client's auth → connection.confirmed, every 0.5 s (inf: over 10 s)")
    print("attackers saw: close codes once they read again for a second (1006: cut off)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attackers", type=int, nargs="+", default=[10])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--build", action="append", default=[], help="name=checkout path")
    args = parser.parse_args()
    builds = [tuple(b.split("=", 1)) for b in args.build] or [("this", ".")]
    outcomes = []
    for round_, attackers in enumerate(args.attackers):
        order = builds if round_ % 2 == 0 else builds[::-1]
        for name, path in order:
            print(f"-- {name}, {attackers} attackers", file=sys.stderr, flush=True)
            outcomes.append(run(name, Path(path).resolve(), attackers, args.seconds))
    outcomes.sort(key=lambda o: (o.attackers, o.build))
    report(outcomes)


if __name__ == "__main__":
    main()
