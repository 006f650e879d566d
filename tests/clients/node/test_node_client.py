"""The Node client's examples against a real server, round-tripping with the Python client.

They run clients/node/dist, which `scripts/dev test` builds (npm ci, tsc)
before pytest; after changing the TypeScript, run `npm run build` in
clients/node to test the change.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.clients import Connect, Take
from support.paths import repository
from support.server import ServerProcess
from support.waiting import UNIT

from roomcast_client import Event

NODE_CLIENT = repository() / "clients" / "node"
EXAMPLES = NODE_CLIENT / "dist" / "examples"
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, once the examples are built."""
    if NODE is None and os.environ.get("CI") != "true":
        pytest.skip("Node.js is not installed (CI requires it)")
    assert NODE is not None, "Node.js is required in CI"
    assert (EXAMPLES / "publish.js").is_file(), (
        "clients/node is not built: run scripts/dev test, or npm ci && npm run build there"
    )
    return NODE


def environment(server: ServerProcess, token: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    return base | {"ROOMCAST_TARGET": server.target, "ROOMCAST_TOKEN": token}


async def run(node: str, script: str, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        node,
        str(EXAMPLES / script),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30 * UNIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


class Tail:
    """`node tail.js` running in the background."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.markers: list[str] = []

    @classmethod
    async def start(cls, node: str, *args: str, env: dict[str, str]) -> Tail:
        process = await asyncio.create_subprocess_exec(
            node,
            str(EXAMPLES / "tail.js"),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        tail = cls(process)
        assert process.stderr is not None
        async with asyncio.timeout(15 * UNIT):
            while not (tail.markers and tail.markers[-1].startswith("subscribed: ")):
                line = (await process.stderr.readline()).decode()
                assert line, f"tail.js ended before it was live: {tail.markers}"
                tail.markers.append(line.strip())
        return tail

    async def events(self) -> list[dict[str, Any]]:
        out, err = await asyncio.wait_for(self.process.communicate(), 15 * UNIT)
        assert self.process.returncode == 0, err.decode()
        return [json.loads(line) for line in out.decode().splitlines()]


async def test_node_publishes_and_python_receives(
    node: str,
    server: ServerProcess,
    connect: Connect,
    service: str,
    unique: Callable[[str], str],
    take: Take,
) -> None:
    room = unique("global.fromnode")
    payload = {"from": "node", "n": 7, "ok": True, "tags": ["a", None], "deep": {"x": 1.5}}
    async with connect(service).subscribe(room) as events:
        code, out, err = await run(
            node,
            "publish.js",
            room,
            "greeting",
            json.dumps(payload),
            env=environment(server, service),
        )
        assert code == 0, err
        [event] = await take(events, 1)
    published = json.loads(out)
    assert isinstance(event, Event)
    assert event.id == published["id"]
    assert (str(event.offset), event.epoch) == (published["offset"], published["epoch"])
    assert event.event == "greeting"
    assert event.payload == {**payload, "n": 7.0}
    assert event.sender.service == "backend"


async def test_python_publishes_and_node_receives(
    node: str, server: ServerProcess, connect: Connect, service: str, unique: Callable[[str], str]
) -> None:
    user = unique("u")
    room = f"user.{user}.notifications"
    # The user's own token: Node follows the room the way the user's app would.
    tail = await Tail.start(
        node,
        room,
        "--count",
        "2",
        env=environment(server, server.token(user, "user", tenant="acme")),
    )
    python = connect(service)
    first = await python.send_user_notification(user, {"title": "one"}, tenant_id="acme")
    second = await python.send_user_notification(user, {"title": "two", "n": 2}, tenant_id="acme")
    received = await tail.events()
    assert [e["id"] for e in received] == [first.id, second.id]
    assert [e["offset"] for e in received] == [str(first.offset), str(second.offset)]
    assert {e["room"] for e in received} == {room}
    assert {e["event"] for e in received} == {"user.notification"}
    assert {e["tenantId"] for e in received} == {"acme"}
    assert [e["payload"] for e in received] == [{"title": "one"}, {"title": "two", "n": 2}]


async def test_node_resumes_from_a_position_published_by_python(
    node: str, server: ServerProcess, connect: Connect, service: str, unique: Callable[[str], str]
) -> None:
    room = unique("global.resume")
    python = connect(service)
    first = await python.publish(room, "e", {"n": 1})
    await python.publish(room, "e", {"n": 2})
    await python.publish(room, "e", {"n": 3})
    since = f"{room}={first.offset}:{first.epoch}"
    tail = await Tail.start(
        node, room, "--since", since, "--count", "3", env=environment(server, service)
    )
    live = await python.publish(room, "e", {"n": 4})
    received = await tail.events()
    assert [e["payload"]["n"] for e in received] == [2, 3, 4]
    assert received[-1]["id"] == live.id
    recovery = json.loads(tail.markers[0].removeprefix("recovery: "))
    assert recovery["recovered"] is True
    assert recovery["position"] == {"offset": "3", "epoch": first.epoch}


async def test_node_reports_refusals_by_status_name(node: str, server: ServerProcess) -> None:
    user_token = server.token("alice", "user", tenant="acme")
    code, out, err = await run(
        node, "publish.js", "global.lobby", "greeting", env=environment(server, user_token)
    )
    assert code == 1
    assert out == ""
    assert err.startswith("PERMISSION_DENIED: may not publish to room 'global.lobby'")
    code, _, err = await run(
        node, "tail.js", "platform.admins", env=environment(server, user_token)
    )
    assert code == 1
    assert err.startswith("PERMISSION_DENIED:")


def test_the_generated_stubs_are_committed_next_to_their_template() -> None:
    generated = sorted(p.name for p in (NODE_CLIENT / "src" / "gen" / "roomcast" / "v1").iterdir())
    assert generated == ["admin_pb.ts", "event_pb.ts", "realtime_pb.ts"]
    header = (NODE_CLIENT / "src" / "gen" / "roomcast" / "v1" / "realtime_pb.ts").read_text()
    assert header.startswith("// @generated by protoc-gen-es v2.")
    lock = json.loads((NODE_CLIENT / "package-lock.json").read_text())
    assert Path(NODE_CLIENT / "package.json").is_file()
    assert lock["packages"]["node_modules/@connectrpc/connect-node"]["version"] == "2.2.0"
