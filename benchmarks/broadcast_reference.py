"""The reference for fanout.py: a bare ``websockets.broadcast()`` server.

The loop websockets' documentation recommends for fan-out, and nothing
more: a set of connected clients and a timer that builds one JSON frame and
calls ``broadcast(clients, message)``, which encodes the message once and
writes a frame to each connection without awaiting. It speaks just enough
of the room protocol for the same load generator to drive it: an ``auth``
frame gets ``connection.confirmed`` (the token is not checked) and
``join_room`` adds the connection to the one room. Its event frames have the
shape and size of roomcast's. Same websockets version as roomcast,
compression off, on the same event loop (uvloop unless ``--loop asyncio``).

Prints ``reference ready: http=HOST:PORT``, then reads commands on stdin:
``publish RATE SECONDS`` publishes one event every 1/RATE s for SECONDS and
prints ``published N``.

    .venv/bin/python benchmarks/broadcast_reference.py [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from datetime import UTC, datetime

import uvloop
from pacing import schedule
from websockets.asyncio.server import ServerConnection, broadcast, serve

__all__ = ["main"]

# The members of the one room.
MEMBERS: set[ServerConnection] = set()
EPOCH = secrets.token_hex(4)
ID_PREFIX = secrets.token_hex(4)


async def handler(websocket: ServerConnection) -> None:
    try:
        async for message in websocket:
            frame = json.loads(message)
            if frame.get("type") == "auth":
                await websocket.send('{"type":"connection.confirmed"}')
            elif frame.get("type") == "join_room":
                MEMBERS.add(websocket)
                await websocket.send(json.dumps({"type": "room_joined", "room": frame["room"]}))
    finally:
        MEMBERS.discard(websocket)


def event(n: int, due: float, text: str) -> str:
    """Event ``n`` as roomcast would frame it (``t``: when it was due, monotonic µs)."""
    return json.dumps(
        {
            "type": "event",
            "room": "global.bench",
            "event": "bench.tick",
            "payload": {"t": int(due * 1e6), "n": n, "text": text},
            "offset": n,
            "epoch": EPOCH,
            "id": f"{ID_PREFIX}-{n:x}",
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "sender": {"user_id": "bench", "service": "bench"},
        },
        separators=(",", ":"),
    )


async def publish(rate: float, seconds: float, text: str) -> None:
    # Stamped from the schedule, as roomcast's publisher stamps its events.
    n = 0
    async for n, due in schedule(rate, seconds):
        broadcast(MEMBERS, event(n, due, text))
    print(f"published {n}", flush=True)


async def main_async(text: str) -> None:
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()

    def on_command() -> None:
        line = sys.stdin.readline()
        if not line:  # the benchmark went away
            if not finished.done():
                finished.set_result(None)
            return
        _, rate, seconds = line.split()
        task = loop.create_task(publish(float(rate), float(seconds), text))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"reference ready: http={host}:{port}", flush=True)
        loop.add_reader(sys.stdin.fileno(), on_command)
        await finished
        loop.remove_reader(sys.stdin.fileno())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--text", default="hello", help="the payload's text field")
    args = parser.parse_args()
    if args.loop == "uvloop":
        uvloop.run(main_async(args.text))
    else:
        asyncio.run(main_async(args.text))


if __name__ == "__main__":
    main()
