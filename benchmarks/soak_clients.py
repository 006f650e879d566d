"""The soak benchmark's well-behaved WebSocket clients, and the client process.

A well-behaved client does what a careful application does, at a human
pace: it authenticates (first frame, query string or cookie), joins rooms
(chats, documents, global rooms; it is in its own from the start), sends
messages, typing and cursor updates, asks for presence (paging on
``next_page_token``) and history (with ``since`` and ``limit``, paging on
``more``), leaves and rejoins, refreshes its token (when told it expires,
and now and then unasked), pings, and now and then drops its connection and
resumes every room with ``since`` (room_joined ``missed``, then ``missed``
frames while ``more``). It reads every frame, checks each against
docs/protocol.md, and records every stored event it gets by room, epoch and
offset, with the stretches of time it was in each room
(:class:`~soak_plan.Segment`): ``soak_ledger`` checks from these that every
acknowledged event reached it, once.

:func:`run` is a client process: well-behaved, stalling and abusive clients
(``soak_abuse``) of one slice of the run, driven over a pipe by ``soak.py``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from soak_abuse import Abuser, Staller
from soak_link import Client, Gone, Link, Shared
from soak_plan import (
    CHATS,
    DOCUMENTS,
    EVENTS,
    GLOBALS,
    ROOMS_PER_TENANT,
    Member,
    Segment,
    own_rooms,
    payload,
    payload_problem,
    publishable,
    scope_of,
)
from websockets.exceptions import WebSocketException

__all__ = ["WellBehaved", "run"]

SIGNALS = ("typing", "cursor", "presence.join", "presence.leave")
#: What a busy server or machine may do to a client: reported, not failed.
TROUBLE = (Gone, TimeoutError, OSError, WebSocketException)


@dataclass(slots=True)
class RoomState:
    """One room of one connection.

    Attributes:
        epoch: the room's epoch ("" until its first event, for a room with none).
        start: the membership owes every event after this offset.
        top: the newest offset received here.
        position: the room's position when the join was answered.
        rejoin: the join was of a room the connection was already in.
        seen: offsets received on this connection (a rejoin's ``missed``
            may repeat them: docs/protocol.md).
        expect: the offset the next missed event must have.
        done: set when the last ``missed`` frame of the join arrived.
    """

    epoch: str
    start: int
    top: int
    position: int
    rejoin: bool = False
    expect: int = 0
    seen: set[int] = field(default_factory=set)
    done: asyncio.Future[None] | None = None


class WellBehaved(Client):
    """A client that follows the protocol, reads everything and records it."""

    population = "well-behaved"

    def __init__(self, shared: Shared, index: int, tenant: str, user: str) -> None:
        super().__init__(shared, index, tenant, user)
        self.member = Member(f"ws{index} ({tenant}/{user})", "ws")
        self.own = own_rooms(user, tenant)
        self.wanted: set[str] = set()  # rooms it means to be in, besides its own
        self.last: dict[str, tuple[int, str]] = {}  # room -> last (offset, epoch) seen
        self.link: Link | None = None
        self.connection_id = ""
        self.rooms: dict[str, RoomState] = {}  # of the current connection
        self.joining: dict[int, tuple[str, int | None]] = {}  # join id -> (room, since)
        self.refreshing: set[asyncio.Task[None]] = set()

    # -- the client's life -------------------------------------------------------

    async def run(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.act()
        finally:
            self.acted.set()
        finishing = asyncio.ensure_future(self.shared.finishing.wait())
        while not finishing.done():
            assert self.link is not None
            either: list[asyncio.Future[Any]] = [finishing, self.link.closed]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not finishing.done():
                await self.recover("closed while waiting for the end")
        await self.finish()

    async def act(self) -> None:
        """Join the first rooms, then act at random until the run's stop."""
        shared, rng = self.shared, self.rng
        try:
            await self.connect()
            for room in self.initial_rooms():
                await self.join(room)
        except TROUBLE as error:
            await self.recover(f"start: {error!r}")
        actions = {
            self.send_message: 28,
            self.typing: 10,
            self.cursor: 14,
            self.presence: 6,
            self.history: 10,
            self.leave_and_rejoin: 6,
            self.reconnect: 3,
            self.ping: 8,
            self.refresh: 2,
        }
        think = shared.config["think"]
        while time.monotonic() < shared.stop:
            await asyncio.sleep(min(rng.expovariate(1 / think), 5 * think))
            if time.monotonic() >= shared.stop:
                break
            action = rng.choices(list(actions), list(actions.values()))[0]
            try:
                await action()
            except TROUBLE as error:
                await self.recover(f"{action.__name__}: {error!r}")

    def initial_rooms(self) -> list[str]:
        rng = self.rng
        rooms = rng.sample(CHATS, rng.choice([1, 2, 2, 3]))
        if rng.random() < 0.5:
            rooms.append(rng.choice(DOCUMENTS))
        if rng.random() < 0.7:
            rooms.append(rng.choice(GLOBALS))
        return rooms

    async def finish(self) -> None:
        """The run is over: read to a last pong, close every stretch with no end, and go."""
        assert self.link is not None
        try:
            await self.link.ping()
        except TROUBLE as error:
            self.tally.anomaly("no pong at the end", repr(error), incident=True)
            self.end_all(float("-inf"))
            return
        await self.link.close()  # reading to the close frame: the rooms are still its
        self.end_all(float("inf"))

    async def recover(self, why: str) -> None:
        """The connection failed under the client: resume on a new one."""
        link = self.link
        if link is not None and not link.closed.done():
            self.tally.anomaly("request failed", why, incident=True)
            link.abort()
            await link.closed
        elif link is not None:
            self.tally.anomaly(
                f"closed by the server with {link.closed.result()}", why, incident=True
            )
        self.end_all(float("-inf"))
        await asyncio.sleep(0.5)
        await self.resume()

    def end_all(self, end: float) -> None:
        for room, state in self.rooms.items():
            self.end(room, state, end)
        self.rooms = {}

    def end(self, room: str, state: RoomState, end: float) -> None:
        key = (scope_of(room, self.tenant), room, state.epoch)
        self.member.segments.append(Segment(key, state.start, state.top, end))
        if state.epoch:
            self.last[room] = (state.top, state.epoch)

    # -- connecting ----------------------------------------------------------------

    async def connect(self) -> None:
        """Open a connection and authenticate, one of the three ways."""
        self.rooms, self.joining = {}, {}
        # Now and then a token that expires within the run: it must be refreshed.
        ttl = self.rng.randint(65, 120) if self.rng.random() < 0.1 else 7200
        how = self.rng.choice(["frame", "frame", "query", "cookie"])
        self.link = await Link.connect(
            self.shared.url, self.tally, self.token(ttl=ttl), self.on_frame, how
        )

    async def resume(self) -> None:
        """Connect again and resume every room from the last event seen there."""
        for attempt in range(8):
            try:
                await self.connect()
                for room in self.own:
                    if room in self.last:  # it is in its own rooms already: a rejoin
                        await self.join(room, since=True)
                for room in sorted(self.wanted):
                    await self.join(room, since=True)
                return
            except TROUBLE as error:
                self.tally.anomaly("resume failed", repr(error)[:300], incident=True)
                if self.link is not None and not self.link.closed.done():
                    self.link.abort()
                self.end_all(float("-inf"))
                await asyncio.sleep(min(5.0, 0.5 * 2**attempt))
        raise Gone(1006)

    async def reconnect(self) -> None:
        assert self.link is not None
        sent = await self.link.ping()
        await self.link.close()
        self.end_all(sent)
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        await self.resume()

    # -- frames in -------------------------------------------------------------------

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event":
            self.on_event(frame, resumed=False)
        elif kind in SIGNALS:
            user = frame.get("user") or {}
            if user.get("connection_id") == self.connection_id:
                self.tally.anomaly("own signal echoed", str(frame)[:200])
            if frame.get("room") not in self.rooms:
                self.tally.anomaly("signal of a room not joined", str(frame)[:200])
        elif kind == "room_joined":
            self.on_joined(frame)
        elif kind == "missed":
            self.on_missed(frame)
        elif kind == "connection.confirmed":
            self.on_confirmed(frame)
        elif kind == "token.expiring":
            task = asyncio.create_task(self.refresh())
            self.refreshing.add(task)
            task.add_done_callback(self.refreshing.discard)

    def on_confirmed(self, frame: dict[str, Any]) -> None:
        self.connection_id = frame["connection_id"]
        if sorted(frame["rooms"]) != sorted(self.own):
            self.tally.anomaly("own rooms differ", f"{frame['rooms']} != {self.own}")
        for room, position in frame["positions"].items():
            offset = position["offset"]
            self.rooms[room] = RoomState(position["epoch"], offset, offset, offset)

    def on_event(self, frame: dict[str, Any], *, resumed: bool) -> None:
        room, offset, epoch = frame["room"], frame["offset"], frame["epoch"]
        scope = scope_of(room, self.tenant)
        if frame.get("event") in EVENTS and (
            problem := payload_problem(frame.get("payload"), scope, room)
        ):
            self.tally.anomaly("bad payload", f"{room} offset {offset}: {problem}")
        if offset == 0:
            return  # kept out of history: live only, not owed
        state = self.rooms.get(room)
        if state is None:
            self.tally.anomaly("event of a room not joined", f"{room} offset {offset}")
            return
        if not state.epoch:
            state.epoch = epoch
        elif epoch != state.epoch:
            self.tally.anomaly("epoch changed", f"{room}: {state.epoch} -> {epoch}")
            return
        key = (scope, room, epoch)
        self.shared.event_id(key, offset, frame["id"], self.tally)
        if resumed:
            if offset != state.expect:
                self.tally.anomaly("missed events not consecutive", f"{room} {offset}")
            state.expect = offset + 1
            if state.rejoin and offset in state.seen:
                self.member.overlaps += 1  # allowed: docs/protocol.md, joining a room it is in
                return
        else:
            if state.done is not None and not state.done.done():
                self.tally.anomaly("live event before the last missed frame", f"{room} {offset}")
            if offset < state.top and offset not in state.seen:
                self.tally.anomaly("out of order", f"{room} offset {offset} after {state.top}")
        self.member.receive(key, offset, resumed=resumed)
        state.seen.add(offset)
        state.top = max(state.top, offset)

    def on_joined(self, frame: dict[str, Any]) -> None:
        asked = self.joining.pop(frame.get("id"), None)  # type: ignore[arg-type]
        if asked is None:
            self.tally.anomaly("room_joined not asked for", str(frame)[:200])
            return
        room, since = asked
        old = self.rooms.get(room)
        if old is not None:  # a rejoin: the new stretch takes over from the old
            self.end(room, old, float("-inf"))
        position, recovered = frame["offset"], frame["recovered"]
        start = since if since is not None and recovered else position
        state = RoomState(frame["epoch"], start, max(start, old.top if old else 0), position)
        state.expect = start + 1
        if old is not None:
            state.rejoin, state.seen = True, old.seen
        if frame["more"]:
            state.done = asyncio.get_running_loop().create_future()
        self.rooms[room] = state
        for event in frame["missed"]:
            self.on_event(event, resumed=True)

    def on_missed(self, frame: dict[str, Any]) -> None:
        room = frame["room"]
        state = self.rooms.get(room)
        if state is None or state.done is None or state.done.done():
            self.tally.anomaly("missed frame not expected", str(frame)[:200])
            return
        for event in frame["events"]:
            self.on_event(event, resumed=True)
        if not frame["recovered"]:
            # The rest cannot be served: owed again only after the join's position.
            self.end(room, state, float("-inf"))
            state.start = state.position
            state.top = max(state.top, state.position)
        if not frame["more"]:
            state.done.set_result(None)

    # -- actions -----------------------------------------------------------------------

    def joined(self, *, sending: bool = False) -> list[str]:
        rooms = sorted(self.rooms)
        return [r for r in rooms if publishable(r)] if sending else rooms

    async def join(self, room: str, *, since: bool = False) -> None:
        assert self.link is not None
        frame: dict[str, Any] = {"type": "join_room", "room": room}
        last = self.last.get(room) if since else None
        if last is not None:
            frame["since"] = {"offset": last[0], "epoch": last[1]}
        for attempt in range(5):
            id_ = self.link.next_id()
            self.joining[id_] = (room, last[0] if last else None)
            reply = await self.link.request(frame, id_=id_)
            if reply["type"] == "room_joined":
                break
            self.joining.pop(id_, None)
            if reply.get("code") != "overloaded" or attempt == 4:
                self.refused("join", room, reply)
                return
            await asyncio.sleep(0.5 * 2**attempt)
        state = self.rooms[room]
        if state.done is not None:
            await asyncio.wait_for(state.done, 60)
        if room not in self.own:
            self.wanted.add(room)

    async def leave_and_rejoin(self) -> None:
        rooms = [r for r in self.joined() if r not in self.own]
        if not rooms or self.link is None:
            return
        room = self.rng.choice(rooms)
        sent = await self.link.ping()
        reply = await self.link.request({"type": "leave_room", "room": room})
        if reply["type"] != "room_left":
            self.tally.anomaly("leave refused", f"{room}: {reply}")
            return
        self.end(room, self.rooms.pop(room), sent)
        self.wanted.discard(room)
        await asyncio.sleep(self.rng.uniform(0.3, 2.0))
        choice = self.rng.random()
        if choice < 0.6:
            await self.join(room, since=True)  # resume where it left
        elif choice < 0.8:
            await self.join(room)
        else:
            await self.join(self.rng.choice([r for r in ROOMS_PER_TENANT if r not in self.rooms]))

    async def send_message(self) -> None:
        rooms = self.joined(sending=True)
        if not rooms or self.link is None:
            return
        rooms = self.rng.sample(rooms, min(len(rooms), self.rng.choice([1, 1, 1, 2])))
        targets = [(scope_of(room, self.tenant), room) for room in rooms]
        data = payload(self.rng, self.key(), targets, big=0.01)
        reply = await self.publish(self.link, rooms, data)
        if reply["type"] != "message_sent":
            self.tally.anomaly("send refused", f"{rooms}: {str(reply)[:300]}")

    async def typing(self) -> None:
        rooms = self.joined(sending=True)
        if rooms and self.link is not None:
            frame = {
                "type": "typing",
                "room": self.rng.choice(rooms),
                "state": self.rng.random() < 0.6,
            }
            await self.link.send({**frame, "id": self.link.next_id()})

    async def cursor(self) -> None:
        rooms = self.joined(sending=True)
        if rooms and self.link is not None:
            rng = self.rng
            position: dict[str, Any] = {"line": rng.randint(1, 500), "column": rng.randint(0, 80)}
            if rng.random() < 0.05:
                position["path"] = {"n": {"n": {"n": 1}}}
            frame = {"type": "cursor", "room": rng.choice(rooms), "position": position}
            # A burst: the server passes on at most one per 50 ms, the latest.
            for _ in range(rng.choice([1, 1, 3])):
                await self.link.send({**frame, "id": self.link.next_id()})

    async def presence(self) -> None:
        rooms, link = self.joined(), self.link
        if not rooms or link is None:
            return
        room = self.rng.choice(rooms)
        frame: dict[str, Any] = {"type": "presence", "room": room}
        members: list[dict[str, Any]] = []
        for _ in range(20):
            reply = await link.request(frame)
            if reply["type"] != "presence":
                self.refused("presence", room, reply)
                return
            members += reply["members"]
            if not reply.get("next_page_token"):
                break
            frame["page_token"] = reply["next_page_token"]
        if room in self.rooms and not any(
            m.get("connection_id") == self.connection_id for m in members
        ):
            self.tally.anomaly("not in its own room's presence", f"{room} ({len(members)} members)")

    async def history(self) -> None:
        rooms, link = self.joined(), self.link
        if not rooms or link is None:
            return
        rng = self.rng
        room = rng.choice(rooms)
        state = self.rooms[room]
        limit = rng.choice([1, 5, 20, 100, rng.randint(1, 300)])
        frame: dict[str, Any] = {"type": "history", "room": room, "limit": limit}
        if state.epoch and rng.random() < 0.6:
            frame["since"] = {
                "offset": max(0, state.top - rng.randint(0, 150)),
                "epoch": state.epoch,
            }
        scope = scope_of(room, self.tenant)
        for _ in range(8):
            reply = await link.request(frame)
            if reply["type"] != "history":
                self.refused("history", room, reply)
                return
            events = reply["events"]
            offsets = [e["offset"] for e in events]
            since = frame.get("since", {}).get("offset")
            if len(events) > limit:
                self.tally.anomaly("history page over its limit", f"{room} {len(events)} > {limit}")
            if offsets and offsets != list(range(offsets[0], offsets[0] + len(offsets))):
                self.tally.anomaly("history page not consecutive", f"{room} {offsets[:20]}")
            if offsets and since is not None and reply["recovered"] and offsets[0] != since + 1:
                self.tally.anomaly(
                    "history page does not follow since", f"{room} {since} {offsets[0]}"
                )
            for event in events:
                self.shared.event_id(
                    (scope, room, event["epoch"]), event["offset"], event["id"], self.tally
                )
                if event.get("event") in EVENTS and (
                    problem := payload_problem(event.get("payload"), scope, room)
                ):
                    self.tally.anomaly("bad payload", f"{room} (history) {problem}")
            if not reply["more"] or not events:
                break
            frame["since"] = {"offset": offsets[-1], "epoch": events[-1]["epoch"]}

    async def ping(self) -> None:
        if self.link is not None:
            await self.link.ping()

    async def refresh(self) -> None:
        link = self.link
        if link is None:
            return
        try:
            reply = await link.request({"type": "auth", "token": self.token()})
        except TROUBLE:
            return  # the connection went: the client recovers on its own
        if reply["type"] != "token.refreshed":
            self.tally.anomaly("refresh refused", str(reply)[:200])

    def refused(self, what: str, room: str, reply: dict[str, Any]) -> None:
        if reply.get("code") == "overloaded":  # allowed: retry later (docs/protocol.md)
            self.tally.anomaly(f"{what} overloaded", room, incident=True)
        else:
            self.tally.anomaly(f"{what} refused", f"{room}: {str(reply)[:200]}")


# -- the process ---------------------------------------------------------------------

POPULATIONS: dict[str, type[Client]] = {c.population: c for c in (WellBehaved, Staller, Abuser)}


def run(config: dict[str, Any], control: Connection) -> None:
    """A client process: serve ``soak.py``'s commands over ``control``.

    It says ``ready``; on ``("go", t0, stop)`` its clients start at ``t0``
    and act until ``stop`` (``time.monotonic()``); it says ``stopped`` when
    the last has; on ``finish`` they read to a last pong, close, and the
    process answers with what they recorded.
    """
    uvloop.run(_main(config, control))


async def _main(config: dict[str, Any], control: Connection) -> None:
    loop = asyncio.get_running_loop()
    shared = Shared(config)
    clients = [POPULATIONS[p](shared, i, tenant, user) for i, p, tenant, user in config["clients"]]
    control.send(("ready",))
    _, start, shared.stop = await loop.run_in_executor(None, control.recv)
    watch = asyncio.create_task(shared.watch_log(config["server_log"]))
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    ramp = config["ramp"]
    tasks = [
        asyncio.create_task(c.run(ramp * i / max(1, len(clients)))) for i, c in enumerate(clients)
    ]
    await asyncio.gather(*(c.acted.wait() for c in clients))
    control.send(("stopped",))
    await loop.run_in_executor(None, control.recv)
    shared.finishing.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for client, result in zip(clients, results, strict=True):
        if isinstance(result, BaseException):
            client.tally.anomaly("client failed", f"{type(result).__name__}: {result!r}"[:300])
    watch.cancel()
    control.send(
        {
            "tallies": shared.tallies,
            "members": [c.member for c in clients if isinstance(c, WellBehaved)],
            "acks": shared.acks,
            "ids": shared.ids,
            "outcomes": shared.outcomes,
        }
    )
