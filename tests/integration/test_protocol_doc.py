"""Every WebSocket example in docs/protocol.md, replayed against a real server.

Each ```ws block is a conversation: ``→`` lines are sent as written (with
``$TOKEN`` and ``$EPOCH`` filled in), ``←`` lines must arrive in that order.
A received frame must have exactly the keys shown; ``"..."`` stands for any
value (ids, times, epochs), everything else must be equal. The block's first
line names the scene, which sets the stage (who else is there, what the room
already holds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from support.grpc import bearer, payload
from support.paths import repository
from support.server import ServerProcess, serving
from support.waiting import UNIT
from support.ws import WsClient

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

DOC = repository() / "docs" / "protocol.md"
BLOCK = re.compile(r"```ws\n(.*?)```", re.DOTALL)
ANY = "..."


def blocks() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## WebSocket bridge") :]
    return BLOCK.findall(section)


def matches(expected: Any, actual: Any) -> bool:
    """``actual`` is ``expected``, where ``"..."`` matches anything."""
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(expected) == set(actual)
            and all(matches(value, actual[key]) for key, value in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual and type(expected) is type(actual))


Stage = Callable[[ServerProcess, dict[str, str]], Awaitable[Callable[[int], Awaitable[None]]]]


async def nothing(
    server: ServerProcess, values: dict[str, str]
) -> Callable[[int], Awaitable[None]]:
    async def after(_: int) -> None:
        return None

    return after


async def lobby_holds_three(
    server: ServerProcess, values: dict[str, str]
) -> Callable[[int], Awaitable[None]]:
    """chat.lobby of acme holds events 1 to 3, published by a backend."""
    token = server.token("backend", "service", tenant="acme")
    async with server.channel() as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        for n in (1, 2, 3):
            published = await stub.Publish(
                realtime_pb2.PublishRequest(
                    room="chat.lobby", event="chat.message", payload=payload(n=n)
                ),
                metadata=bearer(token),
            )
    values["EPOCH"] = published.epoch
    return await nothing(server, values)


async def bob_in_design(
    server: ServerProcess, values: dict[str, str]
) -> Callable[[int], Awaitable[None]]:
    """bob is in chat.design; once alice has joined, he types, moves, leaves."""
    bob = await WsClient.connect(server, server.token("bob", "user", tenant="acme"))
    await bob.next("connection.confirmed")
    assert (await bob.request({"type": "join_room", "room": "chat.design"}))["type"] == (
        "room_joined"
    )

    async def after(received: int) -> None:
        if received == 2:  # alice's room_joined
            await bob.send({"type": "typing", "room": "chat.design", "state": True})
            position = {"line": 3, "column": 14}
            await bob.send({"type": "cursor", "room": "chat.design", "position": position})
            await bob.close()

    return after


STAGES: dict[str, Stage] = {
    "as alice (user of tenant acme)": nothing,
    "as alice (user of tenant acme); chat.lobby holds events 1 to 3": lobby_holds_three,
    "as alice (user of tenant acme), while bob is in chat.design": bob_in_design,
}


def test_the_document_has_conversations_for_every_stage() -> None:
    scenes = [block.splitlines()[0].lstrip("# ") for block in blocks()]
    assert len(scenes) >= 6
    assert set(scenes) == set(STAGES)


def test_every_client_frame_type_appears_in_an_example() -> None:
    sent = {
        json.loads(line[2:])["type"]
        for block in blocks()
        for line in block.splitlines()
        if line.startswith("→ ")
    }
    documented = {"auth", "join_room", "leave_room", "send_message", "presence", "history", "ping"}
    assert documented <= sent


@pytest.mark.parametrize("index", range(len(blocks())), ids=lambda i: f"example-{i + 1}")
async def test_example_conversation(index: int) -> None:
    block = blocks()[index]
    lines = block.splitlines()
    stage = STAGES[lines[0].lstrip("# ")]
    with serving() as server:
        values = {"TOKEN": server.token("alice", "user", tenant="acme")}
        after = await stage(server, values)
        client = await WsClient.connect(server, None)
        received = 0
        for line in lines[1:]:
            text = line[2:]
            for name, value in values.items():
                text = text.replace(f"${name}", value)
            if line.startswith("→ "):
                await client.send(json.loads(text))
            elif line.startswith("← "):
                expected = json.loads(text)

                def arrived(count: int = received) -> dict[str, Any] | None:
                    return client.frames[count] if len(client.frames) > count else None

                actual = await client.wait(arrived, 5 * UNIT)
                assert matches(expected, actual), (
                    f"example {index + 1}, frame {received + 1}:\n"
                    f"  documented {expected}\n  received   {actual}"
                )
                received += 1
                await after(received)
        await client.close()


def test_matches_wildcards_but_not_missing_keys() -> None:
    assert matches({"a": ANY, "b": [1, {"c": ANY}]}, {"a": 5, "b": [1, {"c": "x"}]})
    assert not matches({"a": ANY}, {"a": 1, "extra": 2})
    assert not matches({"a": 1}, {"a": 1.0})
    assert not matches([1, 2], [1])
