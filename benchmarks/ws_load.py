"""A lean WebSocket load generator: many subscribers in one process.

Each subscriber is a bare ``asyncio.Protocol`` speaking just enough of RFC
6455 to take part: the upgrade request, one masked ``auth`` frame and one
``join_room`` frame out, and frame headers in. Frames are counted from their
headers alone; only event frames whose turn it is for a latency sample (one
in ``sample_every`` per subscriber, staggered so samples cover every
subscriber and every event) are decoded. No websockets library, no task and
no per-frame allocation beyond what the event loop hands over, so that the
load generator is cheaper per frame than the server it measures.

The process is driven over a ``multiprocessing`` pipe by ``fanout.py``: see
:func:`run` for the commands.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import time
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import cast

import orjson
import uvloop

from roomcast.auth import mint_token

__all__ = ["Totals", "run"]

# Every event frame starts so, from roomcast and from the reference server.
EVENT_PREFIX = b'{"type":"event"'
PRESENCE_PREFIX = b'{"type":"presence.'
# RFC 6455 5.2 opcodes.
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def _wall_us(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp() * 1_000_000)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame (RFC 6455 5.3: "a client MUST mask all frames")."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    key = os.urandom(4)
    mask = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(length, "big")
    return header + key + masked


@dataclass
class Totals:
    """What the subscribers of one process counted so far."""

    open: int
    events: int  # event frames received
    event_bytes: int  # their payload bytes
    others: int  # other text frames (replies, presence)


@dataclass
class _Shared:
    """State the subscribers of one process share."""

    host: str
    room: str | None  # None: stay idle after authenticating
    sample_every: int
    # Per sampled event: publish → receive and publish → accepted (±1 ms) in
    # µs, and the event's number.
    samples: list[tuple[int, int, int]] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)


class Subscriber(asyncio.Protocol):
    """One WebSocket subscriber."""

    __slots__ = (
        "_buffer",
        "_next_sample",
        "_shared",
        "_token",
        "_transport",
        "event_bytes",
        "events",
        "open",
        "others",
        "ready",
        "upgraded",
    )

    def __init__(self, shared: _Shared, token: str, phase: int) -> None:
        self._shared = shared
        self._token = token
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._next_sample = phase
        self.upgraded = False
        self.open = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.events = self.event_bytes = self.others = 0

    # -- connection --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is no subclass of asyncio.Transport).
        self._transport = transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {self._shared.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready ({exc})"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _send(self, frame: dict[str, object]) -> None:
        assert self._transport is not None
        self._transport.write(client_frame(TEXT, orjson.dumps(frame)))

    # -- frames in ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                status = data[: data.find(b"\r\n")].decode(errors="replace")
                self.ready.set_exception(ConnectionError(f"upgrade refused: {status}"))
                self.close()
                return
            self.upgraded = self.open = True
            self._send({"type": "auth", "token": self._token})
            data = data[end + 4 :]
        # The hot path: walk the frame headers of what arrived (RFC 6455 5.2).
        # Server frames are never masked and, from these servers, never
        # fragmented.
        size = len(data)
        position = 0
        while position + 2 <= size:
            length = data[position + 1] & 0x7F
            if length < 126:
                start = position + 2
            elif length == 126:
                if position + 4 > size:
                    break
                length = (data[position + 2] << 8) | data[position + 3]
                start = position + 4
            else:
                if position + 10 > size:
                    break
                length = int.from_bytes(data[position + 2 : position + 10], "big")
                start = position + 10
            end = start + length
            if end > size:
                break
            opcode = data[position] & 0x0F
            if opcode == TEXT:
                if data.startswith(EVENT_PREFIX, start):
                    self.events += 1
                    self.event_bytes += length
                    if self.events == self._next_sample:
                        self._next_sample += self._shared.sample_every
                        self._sample(data[start:end])
                else:
                    self.others += 1
                    if not data.startswith(PRESENCE_PREFIX, start):
                        self._reply(orjson.loads(data[start:end]))
            elif opcode == PING:
                assert self._transport is not None
                self._transport.write(client_frame(PONG, data[start:end]))
            elif opcode == CLOSE:
                self.close()
                return
            position = end
        if position < size:
            self._buffer = data[position:]

    def _sample(self, text: bytes) -> None:
        now = time.monotonic_ns() // 1000
        frame = orjson.loads(text)
        sent = frame["payload"]["t"]
        # When the server accepted the event: its "time" (wall clock, in
        # ms), on the monotonic clock.
        accepted = _wall_us(frame["time"]) - (time.time_ns() // 1000 - now)
        self._shared.samples.append((now - sent, accepted - sent, frame["payload"]["n"]))

    def _reply(self, frame: dict[str, object]) -> None:
        kind = frame.get("type")
        if kind == "connection.confirmed":
            room = self._shared.room
            if room is None:
                self.ready.set_result(None)
            else:
                self._send({"type": "join_room", "room": room, "id": 1})
        elif kind == "room_joined":
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "error" and not self.ready.done():
            self.ready.set_exception(ConnectionError(f"refused: {frame}"))


async def _connect(
    shared: _Shared,
    port: int,
    tokens: list[str],
    phases: list[int],
    concurrency: int,
) -> tuple[int, list[str]]:
    """Open one subscriber per token; how many became ready, and why the others did not."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def one(token: str, phase: int) -> bool:
        async with gate:
            try:
                _, subscriber = await loop.create_connection(
                    lambda: Subscriber(shared, token, phase), shared.host, port
                )
                shared.subscribers.append(subscriber)
                await asyncio.wait_for(subscriber.ready, 60)
            except (OSError, TimeoutError) as error:
                failures.append(f"{type(error).__name__}: {error}")
                return False
            return True

    results = await asyncio.gather(*(one(t, p) for t, p in zip(tokens, phases, strict=True)))
    return sum(results), failures[:5]


def _totals(shared: _Shared) -> Totals:
    subscribers = shared.subscribers
    return Totals(
        sum(s.open for s in subscribers),
        sum(s.events for s in subscribers),
        sum(s.event_bytes for s in subscribers),
        sum(s.others for s in subscribers),
    )


def _raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


async def _serve(control: Connection) -> None:
    """Answer the commands of the benchmark until ``close``."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    shared: _Shared | None = None
    tasks: set[asyncio.Task[None]] = set()

    async def connect(command: dict[str, object]) -> None:
        nonlocal shared
        started = time.perf_counter()
        first, count = int(command["first"]), int(command["count"])  # type: ignore[call-overload]
        secret, tenant = str(command["secret"]), str(command["tenant"])
        sample_every = int(command["sample_every"])  # type: ignore[call-overload]
        room = command["room"]
        shared = _Shared(str(command["host"]), None if room is None else str(room), sample_every)
        _raise_file_limit(count + 100)
        tokens = [
            mint_token(secret, subject=f"u{i}", roles=["user"], tenant=tenant, ttl=7200)
            for i in range(first, first + count)
        ]
        phases = [1 + i % sample_every for i in range(first, first + count)]
        ready, failures = await _connect(
            shared,
            int(command["port"]),  # type: ignore[call-overload]
            tokens,
            phases,
            int(command["concurrency"]),  # type: ignore[call-overload]
        )
        control.send(("connected", ready, failures, time.perf_counter() - started))

    def on_command() -> None:
        command = control.recv()
        match command["do"]:
            case "connect":
                task = loop.create_task(connect(command))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            case "totals":
                control.send(_totals(shared) if shared else Totals(0, 0, 0, 0))
            case "samples":  # the latency samples since the last call
                samples: list[tuple[int, int, int]] = []
                if shared is not None:
                    samples, shared.samples = shared.samples, []
                control.send(samples)
            case "close":
                if shared is not None:
                    for subscriber in shared.subscribers:
                        subscriber.close()
                finished.set_result(None)

    loop.add_reader(control.fileno(), on_command)
    # The event loop made the pipe non-blocking; replies (a few hundred KB of
    # samples) must be written whole.
    os.set_blocking(control.fileno(), True)
    await finished
    loop.remove_reader(control.fileno())
    await asyncio.sleep(0.1)  # let the aborts go out
    control.send("closed")


def run(control: Connection) -> None:
    """The load generator's process: serve commands from ``control``.

    Commands (dicts with ``do``): ``connect`` (host, port, secret, tenant,
    first, count, room or None for idle, sample_every, concurrency) → replies
    ``("connected", ready, failures, seconds)`` when done; ``totals`` →
    :class:`Totals`; ``samples`` → latencies (µs) since the last call;
    ``close`` → ``"closed"``.
    """
    uvloop.run(_serve(control))
