"""One client's frames and the node's answers (src/roomcast/bridge/session.py).

A real node on the memory broker (:mod:`support.local_node`) and a real
WebSocket connection in the process (:mod:`support.loopback`): each client
is registered with the node's sessions as the bridge does it, its frames
are handed to ``ClientSession.receive``, and the answers are read from the
client end of the socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from support.inputs import item
from support.local_node import local_node
from support.loopback import Loopback, loopback
from support.tokens import principal, token, user

from roomcast.auth import Principal
from roomcast.bridge.connection import Connection, Flusher
from roomcast.bridge.limits import CursorThrottle
from roomcast.bridge.session import ClientSession, CursorKey, CursorUpdate
from roomcast.node import Node
from roomcast.presence import ConnectionId

BACKEND = principal("backend", "service")


@dataclass
class Client:
    """A client of the node: its session (server side) and its socket (client side)."""

    session: ClientSession
    link: Loopback
    closes: list[tuple[int, str]]

    @property
    def id(self) -> ConnectionId:
        return self.session.connection.id

    async def send(self, frame: dict[str, Any] | str) -> bool:
        """Hand one frame to the session; False when it closed the connection."""
        return await self.session.receive(frame if isinstance(frame, str) else json.dumps(frame))

    async def request(self, frame: dict[str, Any] | str) -> dict[str, Any]:
        """Send a frame; the next frame the client receives."""
        assert await self.send(frame)
        return await self.link.frame()


Open = Callable[..., Awaitable[Client]]


@pytest.fixture
async def open_client() -> AsyncIterator[Open]:
    """``await open_client(node, principal)``: a confirmed client, closed at the end."""
    async with AsyncExitStack() as stack:
        tasks: set[asyncio.Task[None]] = set()
        flusher = Flusher(lambda frames, accepted: None)
        cursors: CursorThrottle[CursorKey, CursorUpdate] = CursorThrottle(0.05)
        count = 0

        def spawn(coroutine: Coroutine[Any, Any, None]) -> None:
            task = asyncio.create_task(coroutine)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def later(delay: float, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
            asyncio.get_running_loop().call_later(delay, lambda: spawn(run()))

        async def open_one(node: Node, who: Principal) -> Client:
            nonlocal count
            count += 1
            link = await stack.enter_async_context(loopback())
            closes: list[tuple[int, str]] = []

            def close(connection: Connection, code: int, reason: str) -> None:
                closes.append((code, reason))
                spawn(connection.websocket.close(code, reason))

            settings = node.settings
            connection = Connection(
                ConnectionId(f"c{count}"),
                link.server,
                flusher,
                settings.ws_send_buffer_bytes,
                close,
                settings.ws_max_reply_bytes,
                settings.ws_drain_timeout,
            )
            # As the bridge confirms a connection: its own rooms, then their events.
            for joined in await node.sessions.connect(connection, who):
                connection.release(joined.room.key, joined.position.offset)
            stack.push_async_callback(node.sessions.disconnect, connection.id)
            return Client(ClientSession(node, connection, who, cursors, later), link, closes)

        yield open_one
        await asyncio.gather(*tasks, return_exceptions=True)


async def publish(node: Node, count: int, room: str = "chat.x", size: int = 10) -> None:
    for n in range(count):
        await node.publish(BACKEND, item(room, data={"n": n, "pad": "x" * size}))


def offsets(events: list[dict[str, Any]]) -> list[int]:
    return [event["offset"] for event in events]


# -- frames in, answers out --------------------------------------------------------


async def test_ping_is_answered_with_pong_echoing_its_id(open_client: Open) -> None:
    alice = await open_client(await local_node(), user("alice"))
    assert await alice.request({"type": "ping", "id": 7}) == {"type": "pong", "id": 7}


async def test_malformed_frames_are_answered_with_errors_and_the_connection_stays(
    open_client: Open,
) -> None:
    alice = await open_client(await local_node(), user("alice"))
    assert await alice.request("not json") == {
        "type": "error",
        "code": "bad_request",
        "message": "frame: not valid JSON",
    }
    unknown = await alice.request({"type": "dance", "id": "q1"})
    assert (unknown["type"], unknown["code"], unknown["id"]) == ("error", "unknown_type", "q1")
    assert await alice.request({"type": "ping"}) == {"type": "pong"}
    assert alice.closes == []


async def test_too_many_refused_frames_close_the_connection_with_4101(open_client: Open) -> None:
    node = await local_node(ws_abuse_limit=3)
    alice = await open_client(node, user("alice"))
    for _ in range(3):
        assert await alice.send("{")
    assert not await alice.send("{")
    errors = await alice.link.frames(4)
    assert {frame["code"] for frame in errors} == {"bad_request"}  # sent before the close
    assert await alice.link.close_code() == 4101
    assert node.metrics.counters.abuse_closes == 1


async def test_frames_faster_than_the_rate_limit_are_refused(open_client: Open) -> None:
    node = await local_node(ws_rate_limit=1.0, ws_rate_burst=2)
    alice = await open_client(node, user("alice"))
    assert await alice.request({"type": "ping"}) == {"type": "pong"}
    assert await alice.request({"type": "ping"}) == {"type": "pong"}
    refused = await alice.request({"type": "ping", "id": 3})
    # docs/protocol.md: "the reply, or the error frame, echoes" a frame's id.
    assert (refused["code"], refused.get("id")) == ("rate_limited", 3)
    assert node.metrics.counters.rate_limited == 1


async def test_an_unexpected_error_is_answered_with_a_reference_not_its_text(
    open_client: Open,
) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    # The connection is gone from the sessions (a race with its disconnect):
    # the join fails with a KeyError naming the connection, a bug, not a refusal.
    await node.sessions.disconnect(alice.id)
    error = await alice.request({"type": "join_room", "room": "chat.x", "id": "q1"})
    assert error["type"] == "error"
    assert error["code"] == "internal"
    assert error["id"] == "q1"
    assert error["message"].startswith("internal error (ref ")
    assert alice.id not in error["message"]
    assert "KeyError" not in error["message"]
    assert node.metrics.counters.internal_errors == 1
    assert alice.closes == []


async def test_an_error_with_a_close_code_closes_the_connection(open_client: Open) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    await alice.request({"type": "join_room", "room": "chat.x"})
    node.begin_drain()
    assert not await alice.send({"type": "send_message", "event": "e", "rooms": ["chat.x"]})
    assert await alice.link.close_code() == 4200


# -- rooms -------------------------------------------------------------------------


async def test_a_join_answers_with_the_position_then_live_events_follow(
    open_client: Open,
) -> None:
    node = await local_node()
    await publish(node, 2)
    alice = await open_client(node, user("alice"))
    joined = await alice.request({"type": "join_room", "room": "chat.x", "id": 1})
    assert joined["type"] == "room_joined"
    assert joined["id"] == 1
    assert (joined["offset"], joined["recovered"], joined["missed"]) == (2, True, [])
    epoch = joined["epoch"]
    await publish(node, 1)
    live = await alice.link.frame()
    assert (live["type"], live["room"], live["offset"], live["epoch"]) == (
        "event",
        "chat.x",
        3,
        epoch,
    )


async def test_a_join_with_since_sends_every_missed_event_once_in_pages(
    open_client: Open,
) -> None:
    # A reply may take 2 KiB: ten events of about 500 bytes take several pages.
    node = await local_node(ws_max_reply_bytes=2048)
    await publish(node, 1)
    epoch = (await node.history(BACKEND, "chat.x", "", None, 1, 1 << 20)).top.epoch
    await publish(node, 10, size=400)
    alice = await open_client(node, user("alice"))
    since = {"offset": 1, "epoch": epoch}
    joined = await alice.request({"type": "join_room", "room": "chat.x", "since": since})
    assert joined["recovered"]
    assert joined["more"]
    assert joined["offset"] == 11
    pages = [joined["missed"]]
    more = True
    while more:
        page = await alice.link.frame()
        assert page["type"] == "missed"
        assert page["recovered"]
        pages.append(page["events"])
        more = page["more"]
    assert offsets([event for events in pages for event in events]) == list(range(2, 12))
    assert len(pages) >= 3
    assert all(len(json.dumps(events)) <= 2048 for events in pages)  # each within the budget
    await publish(node, 1)
    assert (await alice.link.frame())["offset"] == 12
    assert await alice.link.nothing_more()


async def test_a_join_from_a_lost_position_says_it_was_not_recovered(open_client: Open) -> None:
    node = await local_node()
    await publish(node, 3)
    alice = await open_client(node, user("alice"))
    since = {"offset": 1, "epoch": "an0ther"}
    joined = await alice.request({"type": "join_room", "room": "chat.x", "since": since})
    assert joined["recovered"] is False
    assert "epoch changed" in joined["reason"]
    assert joined["missed"] == []
    assert joined["offset"] == 3


async def test_a_join_the_policy_refuses_is_an_error_frame(open_client: Open) -> None:
    alice = await open_client(await local_node(), user("alice"))
    refused = await alice.request({"type": "join_room", "room": "user.bob.private", "id": 2})
    assert (refused["type"], refused["code"], refused["id"]) == ("error", "forbidden", 2)


async def test_leaving_a_room_answers_room_left_and_its_events_stop(open_client: Open) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    await alice.request({"type": "join_room", "room": "chat.x"})
    left = await alice.request({"type": "leave_room", "room": "chat.x", "id": "q"})
    assert left == {"type": "room_left", "room": "chat.x", "id": "q"}
    await publish(node, 1)
    assert await alice.link.nothing_more()
    again = await alice.request({"type": "leave_room", "room": "chat.x"})
    assert again["code"] == "not_member"


async def test_send_message_publishes_and_answers_with_the_offsets(open_client: Open) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    await alice.request({"type": "join_room", "room": "chat.x"})
    frame = {"type": "send_message", "event": "said", "payload": {"t": 1}, "rooms": ["chat.x"]}
    assert await alice.send({**frame, "id": 5})
    own, sent = await alice.link.frames(2)
    assert (own["type"], own["offset"], own["payload"]) == ("event", 1, {"t": 1})
    assert own["sender"] == {"user_id": "alice", "tenant_id": "acme", "connection_id": alice.id}
    assert sent == {"type": "message_sent", "offsets": {"chat.x": 1}, "id": 5}


async def test_sending_to_a_room_not_joined_is_refused(open_client: Open) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    frame = {"type": "send_message", "event": "said", "rooms": ["chat.x"], "id": 1}
    refused = await alice.request(frame)
    assert (refused["code"], refused["id"]) == ("not_member", 1)
    assert not (await node.history(BACKEND, "chat.x", "", None, 10, 1 << 20)).items


async def test_history_is_answered_within_the_reply_budget(open_client: Open) -> None:
    node = await local_node(ws_max_reply_bytes=2048)
    await publish(node, 10, size=400)
    alice = await open_client(node, user("alice"))
    history = await alice.request({"type": "history", "room": "chat.x", "limit": 100})
    assert history["type"] == "history"
    assert history["offset"] == 10
    assert 1 <= len(history["events"]) < 10
    assert history["more"] is True
    assert offsets(history["events"]) == list(range(1, len(history["events"]) + 1))


async def test_presence_lists_the_rooms_members(open_client: Open) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    bob = await open_client(node, user("bob"))
    await alice.request({"type": "join_room", "room": "chat.x"})
    await bob.request({"type": "join_room", "room": "chat.x"})
    joined = await alice.link.frame()  # bob's arrival, announced to alice
    assert (joined["type"], joined["user"]["user_id"]) == ("presence.join", "bob")
    listed = await alice.request({"type": "presence", "room": "chat.x", "id": 9})
    assert listed["type"] == "presence"
    assert listed["id"] == 9
    assert [m["user_id"] for m in listed["members"]] == ["alice", "bob"]
    assert "next_page_token" not in listed


async def test_typing_reaches_the_other_members_once_per_change(open_client: Open) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    bob = await open_client(node, user("bob"))
    await bob.request({"type": "join_room", "room": "chat.x"})
    await alice.request({"type": "join_room", "room": "chat.x"})
    assert (await bob.link.frame())["type"] == "presence.join"
    for state in (True, True, False):
        assert await alice.send({"type": "typing", "room": "chat.x", "state": state})
    seen = await bob.link.frames(2)
    assert [(f["type"], f["state"], f["user"]["user_id"]) for f in seen] == [
        ("typing", True, "alice"),
        ("typing", False, "alice"),
    ]
    assert await bob.link.nothing_more()
    assert await alice.link.nothing_more()  # a signal skips its sender


# -- tokens --------------------------------------------------------------------------


async def test_a_fresh_token_for_the_same_user_is_taken(open_client: Open) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    fresh = token("alice", ttl=7200)
    refreshed = await alice.request({"type": "auth", "token": fresh, "id": 1})
    assert refreshed["type"] == "token.refreshed"
    assert refreshed["id"] == 1
    assert refreshed["expires_at"] == int(alice.session.principal.expires_at)
    assert node.sessions.principal(alice.id).expires_at == alice.session.principal.expires_at


async def test_a_token_of_someone_else_or_a_bad_one_is_refused_without_closing(
    open_client: Open,
) -> None:
    node = await local_node()
    alice = await open_client(node, user("alice"))
    other = await alice.request({"type": "auth", "token": token("bob"), "id": 1})
    assert (other["code"], other["id"]) == ("forbidden", 1)
    bad = await alice.request({"type": "auth", "token": "not.a.token", "id": 2})
    assert (bad["code"], bad["id"]) == ("unauthorized", 2)
    assert alice.session.principal.subject == "alice"
    assert alice.closes == []
    assert await alice.request({"type": "ping"}) == {"type": "pong"}
