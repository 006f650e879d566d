"""The floor under any fan-out: one ``write()`` per connection, nothing else.

Writes one frame-sized buffer (243 bytes, like fanout.py's events) to each of
N loopback TCP connections, ``--rate`` times a second, from a plain Python
loop over ``os.write`` (no event loop, no WebSocket, no bookkeeping), while
another process reads every connection with epoll, as fanout.py's load
generator does. Prints the writer's CPU per write (user and kernel) and the
wall time of one fan-out.

No server that makes one system call per delivery can do better on the same
machine: this bounds deliveries per server CPU-second (and so the ratio
fanout.py prints) and the time for one event to reach its last subscriber.

    .venv/bin/python benchmarks/write_floor.py [--connections 1000] [--rate 100] [--seconds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import select
import socket
import statistics
import time
from multiprocessing.synchronize import Event

__all__ = ["main"]

FRAME = b"\x81\x7e\x00\xef" + b"x" * 239  # a 243-byte WebSocket text frame


def reader(port: int, count: int, ready: Event) -> None:
    """Connect ``count`` times and read everything that arrives."""
    sockets = {}
    poll = select.epoll()
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.setblocking(False)
        poll.register(connection.fileno(), select.EPOLLIN)
        sockets[connection.fileno()] = connection
    ready.set()
    while True:
        for fd, _ in poll.poll():
            sockets[fd].recv(65536)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="fan-outs per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    ready = mp.get_context("spawn").Event()
    process = mp.get_context("spawn").Process(
        target=reader, args=(listener.getsockname()[1], args.connections, ready), daemon=True
    )
    process.start()
    connections: list[socket.socket] = []
    while len(connections) < args.connections:
        connection, _ = listener.accept()
        # As asyncio and uvloop set it: each write leaves at once.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections.append(connection)
    ready.wait()
    descriptors = [c.fileno() for c in connections]
    write = os.write
    walls: list[float] = []
    fan_outs = int(args.rate * args.seconds)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    for n in range(fan_outs):
        delay = start + n / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        began = time.perf_counter()
        for fd in descriptors:
            write(fd, FRAME)
        walls.append(time.perf_counter() - began)
    after = resource.getrusage(resource.RUSAGE_SELF)
    process.kill()

    writes = fan_outs * args.connections
    user = (after.ru_utime - before.ru_utime) / writes * 1e6
    kernel = (after.ru_stime - before.ru_stime) / writes * 1e6
    walls.sort()
    print(
        f"{args.connections:,} connections, {args.rate:g} fan-outs/s, {os.cpu_count()} cores:"
        f" {user + kernel:.2f} us of CPU per write ({kernel:.2f} us in the kernel),"
        f" so at most {1e6 / (user + kernel):,.0f} deliveries per CPU-second;"
        f" one fan-out takes {statistics.median(walls) * 1e3:.2f} ms"
        f" (p99 {walls[int(0.99 * len(walls))] * 1e3:.2f} ms)"
    )


if __name__ == "__main__":
    main()
