"""What the soak benchmark's WebSocket clients are made of.

:class:`Link` is one connection: it sends frames (counting them by type),
matches replies to requests by ``id``, notices the sender's own copy of a
``send_message``, and reads every frame the server sends, handing each to
its client. :class:`Client` is what every kind of client has (its tally,
random numbers, tokens, publishing). :class:`Shared` is what the clients of
one process share: the run's clock, the tallies, the acknowledgements and
event ids seen, and the connections the server's log says it closed (for
stalled clients, which cannot read their close frame until they read again).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from soak_plan import Ack, RoomKey, scope_of
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from roomcast.auth import mint_token

__all__ = ["FRAME_TYPES", "REPLY_TIMEOUT", "Client", "Gone", "Link", "Shared", "Tally", "label"]

REPLY_TIMEOUT = 20.0  # seconds; the server answers a client that reads at once
CLOSING = re.compile(rb"closing connection (\S+) with (\d+)")
#: The client frames of docs/protocol.md ("Frames from the client").
FRAME_TYPES = frozenset(
    ["auth", "join_room", "leave_room", "send_message", "typing", "cursor", "presence", "history",
     "ping"]
)  # fmt: skip
OnFrame = Callable[[dict[str, Any]], None]


def _parse(frame: str | bytes) -> Any:
    """A hand-written frame as the server may read it (None: not JSON)."""
    try:
        return json.loads(frame)  # the standard module: NaN and 2**70 are still JSON to it
    except (ValueError, RecursionError):
        return None


def label(frame: dict[str, Any] | str | bytes) -> str:
    """What a client frame is, for the report: its type, ``unknown type`` or ``malformed``."""
    parsed = frame if isinstance(frame, dict) else _parse(frame)
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    if not isinstance(kind, str):
        return "malformed"
    return kind if kind in FRAME_TYPES else "unknown type"


class Gone(ConnectionError):
    """The connection closed while a request waited for its reply."""

    def __init__(self, code: int) -> None:
        super().__init__(f"connection closed with {code}")
        self.code = code


@dataclass
class Tally:
    """What the clients of one population (or a gRPC process) sent and met.

    Attributes:
        sent: frames sent, by :func:`label`.
        received: frames received, by type.
        errors: ``error`` frames received, by code.
        closes: close codes the server chose (the client did not ask).
        client_closes: connections the client closed itself.
        anomalies: what contradicts docs/protocol.md or the benchmark's
            expectations, by kind: each fails the run.
        incidents: what a busy server may do (a reply later than
            :data:`REPLY_TIMEOUT`, a connection lost), by kind: reported.
        examples: the first few of both, in words.
    """

    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    client_closes: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    incidents: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def anomaly(self, kind: str, detail: str, *, incident: bool = False) -> None:
        (self.incidents if incident else self.anomalies)[kind] += 1
        if len(self.examples) < 25:
            self.examples.append(f"{kind}: {detail}"[:400])

    def add(self, other: Tally) -> None:
        for name in ("sent", "received", "errors", "closes", "anomalies", "incidents"):
            getattr(self, name).update(getattr(other, name))
        self.client_closes += other.client_closes
        self.examples += other.examples[: max(0, 25 - len(self.examples))]


class Shared:
    """The state the clients of one process share.

    Args:
        config: the run's configuration (see ``soak.py``).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.url = f"ws://{config['host']}:{config['port']}/ws"
        self.stop = float("inf")  # when clients stop acting (time.monotonic())
        self.finishing = asyncio.Event()  # the run is over: leave, and report
        self.tallies: dict[str, Tally] = {}
        self.acks: list[Ack] = []
        self.ids: dict[tuple[RoomKey, int], str] = {}
        self.outcomes: dict[str, Counter[str]] = {}  # abuse scenario -> what happened
        self._closed_by_server: dict[str, int] = {}
        self._waiting: dict[str, asyncio.Event] = {}

    def tally(self, population: str) -> Tally:
        return self.tallies.setdefault(population, Tally())

    def event_id(self, key: RoomKey, offset: int, id_: str, tally: Tally) -> None:
        """Remember the id of the event at a position; two ids for one is an anomaly."""
        known = self.ids.setdefault((key, offset), id_)
        if known != id_:
            tally.anomaly("two events at one position", f"{key} offset {offset}: {known} {id_}")

    # -- the server's log: which connections it closed, and with what -----------

    async def watch_log(self, path: str) -> None:
        """Follow the server's log for the connections it closes."""
        try:
            log = open(path, "rb")  # noqa: ASYNC230, SIM115  (a local file, read as it grows)
        except OSError:
            return
        with log:
            rest = b""
            while True:
                rest += log.read()
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    if found := CLOSING.search(line):
                        connection_id = found[1].decode()
                        self._closed_by_server[connection_id] = int(found[2])
                        if event := self._waiting.get(connection_id):
                            event.set()
                await asyncio.sleep(0.1)

    async def server_closed(self, connection_id: str, within: float) -> int | None:
        """The code the server closed a connection with, once its log says so (None: not yet)."""
        if connection_id not in self._closed_by_server:
            event = self._waiting.setdefault(connection_id, asyncio.Event())
            try:
                async with asyncio.timeout(max(within, 0.0)):
                    await event.wait()
            except TimeoutError:
                pass
            finally:
                self._waiting.pop(connection_id, None)
        return self._closed_by_server.get(connection_id)


class Link:
    """One WebSocket connection of a client.

    Args:
        ws: the open connection.
        tally: where to count what is sent and received.
        on_frame: called with every frame the server sends, in order, before
            the reply it may be is handed to its request.
    """

    def __init__(self, ws: ClientConnection, tally: Tally, on_frame: OnFrame | None) -> None:
        self.ws = ws
        self.tally = tally
        self._on_frame = on_frame
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._anonymous: list[int] = []  # raw requests an error without an id may answer
        self._copies: dict[str, dict[str, dict[str, Any]]] = {}  # payload key -> room -> event
        self._copied = asyncio.Event()  # a copy came, or the connection closed
        self._ids = itertools.count(1)
        self.asked_close = False
        loop = asyncio.get_running_loop()
        self.confirmed: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, url: str, tally: Tally, on_frame: OnFrame | None = None, **options: Any
    ) -> Link:
        """A connection, not yet authenticated."""
        ws = await connect(
            url,
            compression=None,
            proxy=None,
            ping_interval=None,  # the server pings; reading answers
            max_size=None,
            open_timeout=REPLY_TIMEOUT,
            **options,
        )
        return cls(ws, tally, on_frame)

    @classmethod
    async def connect(
        cls, url: str, tally: Tally, token: str, on_frame: OnFrame | None = None, how: str = "frame"
    ) -> Link:
        """An authenticated connection: the token as the first frame, in the query or a cookie.

        Raises:
            Gone: the server closed it, or did not confirm in time.
        """
        options: dict[str, Any] = {}
        if how == "query":
            url += f"?token={token}"
        elif how == "cookie":
            options["additional_headers"] = {"Cookie": f"roomcast_token={token}"}
        link = await cls.open(url, tally, on_frame, **options)
        try:
            if how == "frame":
                await link.send({"type": "auth", "token": token})
            async with asyncio.timeout(REPLY_TIMEOUT):
                either: list[asyncio.Future[Any]] = [link.confirmed, link.closed]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except (Gone, TimeoutError):
            pass
        if not link.confirmed.done():
            link.abort()
            raise Gone(await link.closed)
        return link

    def next_id(self) -> int:
        return next(self._ids)

    async def send(self, frame: dict[str, Any] | str | bytes, kind: str = "") -> None:
        """Send a frame (a dict, or text as it is), counted under ``kind`` or its :func:`label`.

        Raises:
            Gone: the connection is closed.
        """
        self.tally.sent[kind or label(frame)] += 1
        try:
            await self.ws.send(orjson.dumps(frame).decode() if isinstance(frame, dict) else frame)
        except ConnectionClosed as error:
            raise Gone(self.ws.close_code or 1006) from error

    async def request(
        self, frame: dict[str, Any] | str | bytes, *, id_: int | None = None
    ) -> dict[str, Any]:
        """Send ``frame`` and return its reply (or ``error`` frame).

        A dict gets the id ``id_`` (a new one when None). Text is sent as it
        is, with the id it carries if any; an error without an id answers it
        too (the server could not read the id).

        Raises:
            Gone: the connection closed first.
            TimeoutError: no reply in time.
        """
        if isinstance(frame, dict):
            id_ = self.next_id() if id_ is None else id_
            frame = {**frame, "id": id_}
        else:
            parsed = _parse(frame)
            carried = parsed.get("id") if isinstance(parsed, dict) else None
            id_ = carried if type(carried) is int else -self.next_id()  # a bool is no id
        if self.closed.done():
            raise Gone(self.closed.result())
        future = self._pending[id_] = asyncio.get_running_loop().create_future()
        raw = not isinstance(frame, dict)
        if raw:
            self._anonymous.append(id_)
        try:
            await self.send(frame)
            return await asyncio.wait_for(future, REPLY_TIMEOUT)
        finally:
            self._pending.pop(id_, None)
            if raw:
                self._anonymous.remove(id_)

    async def send_message(
        self, rooms: list[str], data: dict[str, Any], event: str = "chat.message"
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
        """Send a message; its reply, the sender's own copy by room, and the late copies.

        The server sends the sender its own event like every member's, and
        ``message_sent`` (docs/protocol.md, "Sending"; through the memory
        broker the copy comes first, through Redis it may come after): the copies,
        found by the payload's key ``k``, say which event each acknowledged
        offset is. A copy that comes after the reply is waited for (up to
        :data:`REPLY_TIMEOUT`), and its room listed as late.
        """
        copies = self._copies[data["k"]] = {}
        frame = {"type": "send_message", "event": event, "payload": data, "rooms": rooms}
        try:
            reply = await self.request(frame)
            late = [room for room in reply.get("offsets", ()) if room not in copies]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPLY_TIMEOUT):
                    while not copies.keys() >= set(late) and not self.closed.done():
                        self._copied.clear()
                        await self._copied.wait()
            return reply, copies, late
        finally:
            del self._copies[data["k"]]

    async def ping(self) -> float:
        """Send ``ping`` and read its ``pong``; when the ping left (``time.monotonic()``).

        Everything the server queued for this connection before it read the
        ping has arrived by then.
        """
        sent = time.monotonic()
        reply = await self.request({"type": "ping"})
        if reply.get("type") != "pong":
            self.tally.anomaly("ping answered otherwise", str(reply)[:200])
        return sent

    async def close(self) -> int:
        """Close the connection (1000); the code it closed with."""
        self.asked_close = True
        with contextlib.suppress(ConnectionClosed):
            await self.ws.close()
        return await self.closed

    def abort(self) -> None:
        self.asked_close = True
        self.ws.transport.abort()

    async def _read(self) -> None:
        tally = self.tally
        try:
            async for message in self.ws:
                try:
                    frame = orjson.loads(message)
                except orjson.JSONDecodeError:
                    frame = None
                if not isinstance(frame, dict):
                    tally.anomaly("undecodable frame", repr(message[:200]))
                    continue
                kind = frame.get("type")
                tally.received[str(kind)] += 1
                if kind == "error":
                    tally.errors[str(frame.get("code"))] += 1
                elif kind == "connection.confirmed" and not self.confirmed.done():
                    self.confirmed.set_result(frame)
                elif kind == "event":
                    self._own_copy(frame)
                try:
                    if self._on_frame is not None:
                        self._on_frame(frame)
                except Exception as error:  # a bug of the benchmark: say so, go on reading
                    tally.anomaly("frame handler failed", f"{type(error).__name__}: {error}")
                if kind != "event":
                    self._answer(frame)
        except ConnectionClosed:
            pass
        finally:
            code = self.ws.close_code or 1006
            if self.asked_close:
                tally.client_closes += 1
            else:
                tally.closes[str(code)] += 1
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(Gone(code))
            self.closed.set_result(code)
            self._copied.set()

    def _own_copy(self, frame: dict[str, Any]) -> None:
        data = frame.get("payload")
        key = data.get("k") if isinstance(data, dict) else None
        # ``is not None``: a message's copies are an empty dict until the first arrives.
        if isinstance(key, str) and (copies := self._copies.get(key)) is not None:
            copies[frame["room"]] = frame
            self._copied.set()

    def _answer(self, frame: dict[str, Any]) -> None:
        id_ = frame.get("id")
        future = self._pending.get(id_) if isinstance(id_, int) else None
        if id_ is None and frame.get("type") == "error" and self._anonymous:
            future = self._pending.get(self._anonymous[0])
        if future is not None and not future.done():
            future.set_result(frame)


class Client:
    """What every soak client has.

    Args:
        shared: the process's shared state.
        index: the client's number in the run.
        tenant: its tenant.
        user: its user.
    """

    population = ""

    def __init__(self, shared: Shared, index: int, tenant: str, user: str) -> None:
        self.shared = shared
        self.tally: Tally = shared.tally(self.population)
        self.index, self.tenant, self.user = index, tenant, user
        self.rng = random.Random(shared.config["seed"] * 1_000_003 + index)
        self.acted = asyncio.Event()  # set once it stopped acting
        self.sequence = 0

    async def run(self, delay: float) -> None:
        raise NotImplementedError

    def token(self, **changes: Any) -> str:
        """A token of the client's user, or with the claims ``changes`` names."""
        claims: dict[str, Any] = {
            "subject": self.user,
            "roles": ["user"],
            "tenant": self.tenant,
            "ttl": 7200,
        }
        secret = changes.pop("secret", self.shared.config["secret"])
        return str(mint_token(secret, **(claims | changes)))

    def key(self) -> str:
        """A payload key no other publish of the run has."""
        self.sequence += 1
        return f"{self.population[0]}{self.index}:{self.sequence}"

    async def publish(
        self, link: Link, rooms: list[str], data: dict[str, Any], event: str = "chat.message"
    ) -> dict[str, Any]:
        """Send a message and record what ``message_sent`` acknowledges; the reply."""
        reply, copies, late = await link.send_message(rooms, data, event)
        if reply["type"] != "message_sent":
            return reply
        now = time.monotonic()
        for room, offset in reply["offsets"].items():
            copy = copies.get(room)
            if room in late:
                # Allowed through a shared broker (docs/protocol.md, "Sending"),
                # where the copy comes back through Redis: reported, not failed.
                self.tally.anomaly(
                    "message_sent before the sender's own copy", f"{room} {offset}", incident=True
                )
            if copy is None:
                self.tally.anomaly("own copy never received", f"{room} {offset}")
            elif copy["offset"] != offset:
                self.tally.anomaly("message_sent offset differs", f"{room}: {copy} {offset}")
            elif offset:
                key = (scope_of(room, self.tenant), room, copy["epoch"])
                self.shared.acks.append(Ack(key, offset, copy["id"], now, "ws"))
        return reply
