"""The soak benchmark's stalling and abusive WebSocket clients.

A **stalling** client stops reading (websockets' ``max_queue=1`` stops
reading the socket, and a small receive buffer keeps the kernel from
absorbing much), joins the busiest rooms asking for everything they hold
(``since`` offset 0), and goes on asking for the largest histories. The
server must close it as a slow consumer (4100) without growing. Its close
frame waits behind the bytes the client does not read, so the client reads
again once the server's log says it closed the connection, and records the
close code it then gets.

An **abusive** client runs one scenario per connection (:data:`SCENARIOS`):
malformed JSON, unknown types, payloads nested 33 to 500 levels, NaN and
infinities, oversized payloads and frames (1009), other tenants' rooms,
rooms it is not in, floods past the rate limit (4101), ``since`` positions
beyond any room, bad page tokens, bad ids, bad tokens (4001, 4002), more
connections than a user may hold (4003). Each answer is compared with what
docs/protocol.md says, and every scenario that leaves the connection open
ends with a ``ping`` that must still be answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from soak_link import Client, Gone, Link, Shared
from soak_plan import CHATS, DOCUMENTS, GLOBALS, payload
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

__all__ = ["SCENARIOS", "Abuser", "Staller"]

MAX_FRAME = 128 * 1024  # the server's ws_max_frame_bytes (default)


# -- stalling clients ------------------------------------------------------------------


class Staller(Client):
    """Asks for a lot, then stops reading; must end closed with 4100."""

    population = "stalling"

    async def run(self, delay: float) -> None:
        shared = self.shared
        await asyncio.sleep(delay)
        # Later than the others: the rooms have history to ask for by then.
        await asyncio.sleep(self.rng.uniform(0, 0.2) * (shared.stop - time.monotonic()))
        try:
            # A stall lasts until the server closes it; start none it cannot finish.
            while time.monotonic() + shared.config["stall_limit"] < shared.stop:
                try:
                    await self.stall()
                except (Gone, TimeoutError, OSError, WebSocketException) as error:
                    self.tally.anomaly("connection failed", repr(error)[:300], incident=True)
                await asyncio.sleep(self.rng.uniform(0.5, 2.5))
        finally:
            self.acted.set()

    async def stall(self) -> None:
        config, shared = self.shared.config, self.shared
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (config["host"], config["port"]))
        ws = await connect(
            shared.url,
            sock=sock,
            max_queue=1,  # websockets stops reading the socket at once
            compression=None,
            proxy=None,
            ping_interval=None,
            max_size=None,
        )
        try:
            self.tally.sent["auth"] += 1
            await ws.send(orjson.dumps({"type": "auth", "token": self.token()}).decode())
            confirmed = orjson.loads(await asyncio.wait_for(ws.recv(), 20))
            connection_id = confirmed["connection_id"]
        except (ConnectionClosed, TimeoutError, KeyError, orjson.JSONDecodeError) as error:
            self.tally.anomaly("stall did not start", repr(error)[:300], incident=True)
            ws.transport.abort()
            return
        # Stop reading, and go on asking until the server closes the connection.
        asking = asyncio.create_task(self.ask(ws))
        code = await shared.server_closed(connection_id, config["stall_limit"])
        asking.cancel()
        outcomes = shared.outcomes.setdefault("stalled", Counter())
        if code is None:
            outcomes[f"still open after {config['stall_limit']:g} s"] += 1
            self.tally.anomaly("stall not closed by the server", connection_id)
            self.tally.client_closes += 1
            ws.transport.abort()
            return
        try:  # read again: what was queued, then the close frame
            async with asyncio.timeout(20):
                async for _ in ws:
                    pass
        except (ConnectionClosed, TimeoutError):
            pass
        ws.transport.abort()
        seen = ws.close_code or 1006
        self.tally.closes[str(seen)] += 1
        if (code, seen) == (4100, 4100):
            outcomes["as documented"] += 1
        else:
            outcomes[f"server closed it with {code}; the client read {seen}"] += 1
            self.tally.anomaly("stall closed otherwise", f"{code}, read {seen}")

    async def ask(self, ws: ClientConnection) -> None:
        """Join the busiest rooms asking for all they hold, then ask for histories, 10 a second.

        Under the rate limit (20 a second): a refused frame would count
        towards closing the connection as abusive (4101), not as slow.
        """
        busy = [*GLOBALS, *CHATS[:2], DOCUMENTS[0]]
        since = {"offset": 0, "epoch": ""}  # everything the room holds
        frames: list[dict[str, Any]] = [
            {"type": "join_room", "room": room, "since": since} for room in busy
        ]
        history = (
            {"type": "history", "room": room, "limit": 1000} for room in itertools.cycle(busy)
        )
        with contextlib.suppress(ConnectionClosed):
            for n, frame in enumerate(itertools.chain(frames, history)):
                self.tally.sent[frame["type"]] += 1
                await ws.send(orjson.dumps({**frame, "id": n}).decode())
                await asyncio.sleep(0.1)


# -- abusive clients ---------------------------------------------------------------------


class Abuser(Client):
    """Runs one abuse scenario per connection, at random."""

    population = "abusive"

    def __init__(self, shared: Shared, index: int, tenant: str, user: str) -> None:
        super().__init__(shared, index, tenant, user)
        self.ids = itertools.count(1_000_000)  # for frames written by hand: not the link's

    async def run(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            while time.monotonic() < self.shared.stop:
                name = self.rng.choice(sorted(SCENARIOS))
                try:
                    await SCENARIOS[name](self, name)
                except (Gone, TimeoutError, OSError, WebSocketException) as error:
                    self.tally.anomaly(f"{name}: connection failed", repr(error), incident=True)
                await asyncio.sleep(self.rng.uniform(0.5, 2.5))
        finally:
            self.acted.set()

    def outcome(self, scenario: str, what: str, got: object, expected: object) -> None:
        """Record whether the server answered ``what`` as docs/protocol.md says."""
        outcomes = self.shared.outcomes.setdefault(scenario, Counter())
        if got == expected:
            outcomes["as documented"] += 1
        else:
            outcomes[f"{what}: expected {expected}, got {got}"] += 1
            self.tally.anomaly(f"{scenario} answered otherwise", f"{what}: {expected} != {got}")

    async def interview(
        self, scenario: str, questions: list[Question], *, join: str = "", token: str = ""
    ) -> Link:
        """Authenticate, join ``join``, send each frame and compare its answer; the link."""
        link = await Link.connect(self.shared.url, self.tally, token or self.token())
        if join:
            reply = await link.request({"type": "join_room", "room": join})
            if reply["type"] != "room_joined":
                self.tally.anomaly("abuser could not join", f"{join}: {reply}")
        for frame, expected in questions:
            reply = await link.request(frame)
            self.outcome(scenario, repr(frame)[:60], _answer(reply), expected)
        return link

    async def end(self, scenario: str, link: Link) -> None:
        """The connection must still serve after the abuse; then close it."""
        try:
            answer = _answer(await link.request({"type": "ping"}))
        except (Gone, TimeoutError) as error:
            answer = repr(error)
        self.outcome(scenario, "ping after the abuse", answer, "pong")
        await link.close()

    async def expect_close(self, scenario: str, what: str, link: Link, code: int) -> None:
        try:
            closed = await asyncio.wait_for(asyncio.shield(link.closed), 15)
        except TimeoutError:
            closed = 0
            link.abort()
        self.outcome(scenario, what, closed, code)


#: A frame to send (text as it is: it carries its id, if any), and the answer
#: docs/protocol.md gives: the reply's type, or the error's code.
Question = tuple[dict[str, Any] | str | bytes, str]


def _answer(reply: dict[str, Any]) -> str:
    """What a reply says: the error's code, or the reply's type (and if it did not recover)."""
    if reply.get("type") == "error":
        return str(reply.get("code"))
    return str(reply.get("type")) + (" (not recovered)" if reply.get("recovered") is False else "")


def nested_text(levels: int, *, opening: str = '{"n": ', closing: str = "}") -> str:
    """JSON nested ``levels`` deep, as text (orjson will not encode past 255 levels)."""
    return opening * levels + "1" + closing * levels


async def ask(c: Abuser, name: str, questions: list[Question], join: str = "") -> None:
    """A scenario that only asks: every refusal leaves the connection open."""
    await c.end(name, await c.interview(name, questions, join=join))


MALFORMED: list[str | bytes] = [
    "{",
    '{"type": "ping"',
    "[1, 2, 3]",
    "null",
    "42",
    '"ping"',
    "",
    '{"type": "ping"}}',
    b"\xff\xfe\x00{",  # a binary frame, not UTF-8
    '{"type": "ping", "id": 1, "id": {"a": [}',
]


async def malformed_json(c: Abuser, name: str) -> None:
    await ask(c, name, [(text, "bad_request") for text in MALFORMED])


async def unknown_type(c: Abuser, name: str) -> None:
    kinds = ["subscribe", "JOIN_ROOM", "x" * 300, "event", "error"]
    questions: list[Question] = [({"type": kind}, "unknown_type") for kind in kinds]
    malformed: list[dict[str, Any]] = [{"type": 5}, {"type": None}, {"room": "c"}, {"type": [1]}]
    questions += [(frame, "bad_request") for frame in malformed]
    await ask(c, name, questions)


async def deep_payload(c: Abuser, name: str) -> None:
    head = '"type": "send_message", "event": "x.deep", "rooms": ["chat.c0"]'
    lists = nested_text(c.rng.randint(32, 400), opening="[", closing="]")
    texts = [f'{head}, "payload": {{"l": {lists}}}']
    for depth in (33, c.rng.randint(34, 499), 500):  # the payload is level 1
        texts.append(f'{head}, "payload": {{"d": {nested_text(depth - 1)}}}')
    for depth in (32, c.rng.randint(33, 500)):  # a cursor position deeper than 31
        texts.append(f'"type": "cursor", "room": "chat.c0", "position": {nested_text(depth)}')
    questions: list[Question] = [(f'{{"id": {next(c.ids)}, {t}}}', "bad_request") for t in texts]
    link = await c.interview(name, questions, join="chat.c0")
    # The deepest payload allowed (32 levels) is stored and reaches everyone.
    valid = payload(c.rng, c.key(), [(c.tenant, "chat.c0")], size=10, depth=32)
    reply = await c.publish(link, ["chat.c0"], valid, "x.deep")
    c.outcome(name, "a payload of 32 levels", _answer(reply), "message_sent")
    await c.end(name, link)


async def nan_values(c: Abuser, name: str) -> None:
    head = '"type": "send_message", "event": "x.nan", "rooms": ["chat.c1"]'
    texts = [
        f'{head}, "payload": {{"v": {literal}}}'
        for literal in ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "nan"]
    ]
    texts.append('"type": "cursor", "room": "chat.c1", "position": {"x": NaN}')
    questions: list[Question] = [(f'{{"id": {next(c.ids)}, {t}}}', "bad_request") for t in texts]
    await ask(c, name, questions, join="chat.c1")


async def oversized(c: Abuser, name: str) -> None:
    data = {"blob": "x" * 70_000}  # over the 64 KiB payload limit, under the frame limit
    frame = {"type": "send_message", "event": "x.big", "rooms": ["chat.c2"], "payload": data}
    link = await c.interview(name, [(frame, "too_large")], join="chat.c2")
    text = orjson.dumps({"type": "ping", "pad": "x" * (MAX_FRAME + 10_000)}).decode()
    with contextlib.suppress(Gone):
        await link.send(text, "oversized frame")
    await c.expect_close(name, "a frame over 128 KiB", link, 1009)


async def other_tenants(c: Abuser, name: str) -> None:
    other = next(t for t in c.shared.config["tenants"] if t != c.tenant)
    questions: list[Question] = [
        ({"type": "join_room", "room": f"tenant.{other}.users"}, "forbidden"),
        ({"type": "join_room", "room": f"tenant.{other}.notifications"}, "forbidden"),
        ({"type": "history", "room": f"tenant.{other}.users"}, "forbidden"),
        ({"type": "presence", "room": f"tenant.{other}.notifications"}, "forbidden"),
        ({"type": "join_room", "room": f"tenant.{c.tenant}.admins"}, "forbidden"),  # no admin
        ({"type": "join_room", "room": f"user.{c.user}x.private"}, "forbidden"),  # another's
    ]
    for room in ["chat..x", "foo.bar", "chat.lo*", "a." * 120 + "b", "**", "chat.c0 "]:
        questions.append(({"type": "join_room", "room": room}, "invalid_room"))
    await ask(c, name, questions)


async def not_member(c: Abuser, name: str) -> None:
    frames: list[dict[str, Any]] = [
        {"type": "send_message", "event": "x.y", "rooms": ["chat.c3"], "payload": {}},
        {"type": "typing", "room": "chat.c3", "state": True},
        {"type": "cursor", "room": "chat.c3", "position": {"line": 1}},
        {"type": "leave_room", "room": "chat.c3"},
    ]
    await ask(c, name, [(frame, "not_member") for frame in frames])


async def flood(c: Abuser, name: str) -> None:
    link = await c.interview(name, [])
    with contextlib.suppress(Gone):
        for _ in range(400):  # 20 a second, bursts of 50: most are refused, then 4101
            await link.send({"type": "ping", "id": link.next_id()})
    await c.expect_close(name, "400 pings at once", link, 4101)


async def huge_since(c: Abuser, name: str) -> None:
    top = {"offset": 2**64 - 1, "epoch": "zz"}
    questions: list[Question] = [
        ({"type": "join_room", "room": "chat.c0", "since": top}, "room_joined (not recovered)"),
        ({"type": "history", "room": "chat.c0", "since": top}, "history (not recovered)"),
        ({"type": "join_room", "room": "chat.c2", "since": {"epoch": "e" * 65}}, "bad_request"),
    ]
    for offset in ["18446744073709551616", "1" + "0" * 30, "-1", '"7"', "1.5", "true"]:
        since = f'"since": {{"offset": {offset}, "epoch": "zz"}}'
        text = f'{{"id": {next(c.ids)}, "type": "join_room", "room": "chat.c1", {since}}}'
        questions.append((text, "bad_request"))
    for limit in [0, 1001, True, "ten", -5]:
        questions.append(({"type": "history", "room": "chat.c0", "limit": limit}, "bad_request"))
    await ask(c, name, questions)


async def bad_page_tokens(c: Abuser, name: str) -> None:
    tokens: list[Any] = ["garbage", "nan/x", "inf/x", "-inf/y", "1e999/x", "0.5/", "x" * 129, 5]
    tokens.append("1/" + "c" * 200)
    questions: list[Question] = [
        ({"type": "presence", "room": "global.g0", "page_token": token}, "bad_request")
        for token in tokens
    ]
    questions.append(({"type": "presence", "room": "global.g0", "page_token": ""}, "presence"))
    await ask(c, name, questions)


async def bad_ids(c: Abuser, name: str) -> None:
    ids: list[Any] = ["x" * 65, {"a": 1}, [1], True, 1.5, None]
    texts = [orjson.dumps({"type": "ping", "id": id_}).decode() for id_ in ids]
    await ask(c, name, [(text, "bad_request") for text in texts])


async def bad_tokens(c: Abuser, name: str) -> None:
    variant = c.rng.choice(["ping first", "forged", "expired", "garbage", "query forged", "number"])
    url = c.shared.url
    forged = c.token(secret="not-the-secret-" + "x" * 20)
    if variant == "query forged":
        url += f"?token={forged}"
    link = await Link.open(url, c.tally)
    firsts: dict[str, dict[str, Any]] = {
        "ping first": {"type": "ping"},
        "forged": {"type": "auth", "token": forged},
        "expired": {"type": "auth", "token": c.token(ttl=60, now=time.time() - 7200)},
        "garbage": {"type": "auth", "token": "a.b.c"},
        "query forged": {"type": "ping"},  # ignored: the query's token decides
        "number": {"type": "auth", "token": 5},
    }
    with contextlib.suppress(Gone):
        await link.send(firsts[variant])
    await c.expect_close(name, variant, link, 4002 if variant == "expired" else 4001)


async def too_many_connections(c: Abuser, name: str) -> None:
    token = c.token(subject=f"{c.user}-many")
    links = []
    try:
        for _ in range(c.shared.config["per_user"]):
            links.append(await c.interview(name, [], token=token))
        extra = await Link.open(f"{c.shared.url}?token={token}", c.tally)
        await c.expect_close(name, "one connection too many", extra, 4003)
    finally:
        for link in links:
            await link.close()


SCENARIOS: dict[str, Callable[[Abuser, str], Awaitable[None]]] = {
    "malformed JSON": malformed_json,
    "unknown type": unknown_type,
    "payload nested 33-500 levels": deep_payload,
    "NaN and infinities": nan_values,
    "oversized": oversized,
    "other tenants' rooms": other_tenants,
    "rooms not joined": not_member,
    "flood": flood,
    "since beyond any room": huge_since,
    "bad page tokens": bad_page_tokens,
    "bad ids": bad_ids,
    "bad tokens": bad_tokens,
    "connections past the user's limit": too_many_connections,
}
