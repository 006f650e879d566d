"""The helper verbs reach the browser client, clients/js/roomcast.js, run from Node.

Node runs the shipped ``roomcast.js`` over Node's own WebSocket (the browsers'
API), as several browsers at once; each prints what its handlers receive as
one JSON line. Python sends with ``RoomcastClient``'s helper verbs and reads
the lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from support.clients import Connect
from support.paths import repository
from support.server import ServerProcess
from support.waiting import UNIT

NODE = shutil.which("node")
ROOMCAST_JS = repository() / "clients" / "js" / "roomcast.js"

# Browsers from the environment (BROWSERS: [{name, token, join}]); a line per
# event and state change, "ready" once all are connected and joined; closes
# them all when stdin ends.
BROWSERS = """
const { Roomcast } = await import(process.env.ROOMCAST_JS);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\\n");
const clients = [];
for (const spec of JSON.parse(process.env.BROWSERS)) {
  const rc = new Roomcast(process.env.ROOMCAST_WS_URL, { token: spec.token });
  rc.on("*", (event) => print({ browser: spec.name, kind: "event", ...event }));
  rc.onState(({ state, code, reason }) =>
    print({ browser: spec.name, kind: "state", state, code, reason }),
  );
  await rc.connect();
  for (const room of spec.join) await rc.join(room);
  clients.push(rc);
}
print({ kind: "ready" });
process.stdin.on("data", () => {});
process.stdin.on("end", async () => {
  await Promise.allSettled(clients.map((rc) => rc.close()));
  process.exit(0);
});
"""


class Browsers:
    """A Node process of roomcast.js clients, and the lines they printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def until(self, found: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first line (already read, or read now) for which ``found`` is true."""
        for line in self.lines:
            if found(line):
                return line
        assert self.process.stdout is not None
        async with asyncio.timeout(10 * UNIT):
            while True:
                raw = await self.process.stdout.readline()
                assert raw, f"Node ended: {await self.stderr()}"
                line = json.loads(raw)
                self.lines.append(line)
                if found(line):
                    return line

    async def event(self, browser: str, event_id: str) -> dict[str, Any]:
        """The event with this id, as ``browser``'s ``on("*")`` handler got it."""
        return await self.until(
            lambda line: line.get("browser") == browser and line.get("id") == event_id
        )

    def events(self, browser: str) -> list[dict[str, Any]]:
        """Every event ``browser`` got so far, in order."""
        return [
            line
            for line in self.lines
            if line.get("browser") == browser and line["kind"] == "event"
        ]

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()


@pytest.fixture
async def browsers(server: ServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """``await browsers({name: (token, rooms to join)})``: roomcast.js clients, connected."""
    if NODE is None and os.environ.get("CI") != "true":
        pytest.skip("Node.js is not installed (CI requires it)")
    assert NODE is not None, "Node.js is required in CI"
    started: list[Browsers] = []

    async def start(specs: Mapping[str, tuple[str, Sequence[str]]]) -> Browsers:
        environment = os.environ | {
            "ROOMCAST_JS": ROOMCAST_JS.as_uri(),
            "ROOMCAST_WS_URL": server.ws_url,
            "BROWSERS": json.dumps(
                [{"name": n, "token": t, "join": list(rooms)} for n, (t, rooms) in specs.items()]
            ),
        }
        process = await asyncio.create_subprocess_exec(
            str(NODE),
            # Node 20's own WebSocket is behind a flag (Node 22 has it always).
            *(["--experimental-websocket"] if _node_major() < 22 else []),
            "--input-type=module",
            "--eval",
            BROWSERS,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
            cwd=ROOMCAST_JS.parent,
        )
        node = Browsers(process)
        started.append(node)
        await node.until(lambda line: line["kind"] == "ready")
        return node

    yield start
    for node in started:
        assert node.process.stdin is not None
        node.process.stdin.close()
        try:
            await asyncio.wait_for(node.process.wait(), 10 * UNIT)
        except TimeoutError:
            node.process.kill()
            await node.process.wait()


def _node_major() -> int:
    version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, check=True)
    return int(version.stdout.strip().lstrip("v").split(".")[0])


async def test_the_helper_verbs_reach_roomcast_js(
    browsers: Callable[..., Any],
    connect: Connect,
    server: ServerProcess,
    service: str,
    unique: Callable[[str], str],
) -> None:
    tenant = unique("t")
    node: Browsers = await browsers(
        {
            "alice": (server.token("alice", "user", tenant=tenant), []),
            "carol": (server.token("carol", "tenant_admin", tenant=tenant), []),
            "root": (server.token("root", "super_admin"), ["platform.admins", "platform.security"]),
        }
    )
    backend = connect(service)

    note = await backend.send_user_notification("alice", {"title": "hi"}, tenant_id=tenant)
    got = await node.event("alice", note.id)
    assert (got["room"], got["event"], got["payload"]) == (
        "user.alice.notifications",
        "user.notification",
        {"title": "hi"},
    )

    update = await backend.send_tenant_data_update(tenant, {"table": "invoices"})
    for member in ("alice", "carol"):
        got = await node.event(member, update.id)
        assert (got["room"], got["event"]) == (
            f"tenant.{tenant}.notifications",
            "tenant.data_update",
        )

    tracked = await backend.track_user_activity("alice", tenant, action="login", session_id="s-1")
    got = await node.event("carol", tracked.id)
    assert (got["room"], got["event"], got["offset"]) == (
        f"tenant.{tenant}.admins",
        "user.activity",
        tracked.offset,
    )
    assert got["payload"] == {
        "user_id": "alice",
        "tenant_id": tenant,
        "action": "login",
        "session_id": "s-1",
    }

    to_admins = await backend.send_to_platform_admins("deploy.finished", {"version": "2.4.1"})
    alert = await backend.send_security_alert({"kind": "brute_force"})
    got = await node.event("root", to_admins.id)
    assert (got["room"], got["event"]) == ("platform.admins", "deploy.finished")
    got = await node.event("root", alert.id)
    assert (got["room"], got["event"]) == ("platform.security", "security.alert")

    # Each browser got what was meant for it, and nothing meant for another.
    assert [e["id"] for e in node.events("alice")] == [note.id, update.id]
    assert [e["id"] for e in node.events("carol")] == [update.id, tracked.id]
    assert {e["room"] for e in node.events("root")} <= {"platform.admins", "platform.security"}


async def test_disconnect_user_stops_roomcast_js(
    browsers: Callable[..., Any],
    connect: Connect,
    server: ServerProcess,
    service: str,
    unique: Callable[[str], str],
) -> None:
    tenant = unique("t")
    node: Browsers = await browsers(
        {"mallory": (server.token("mallory", "user", tenant=tenant), [])}
    )
    closed = await connect(service).disconnect_user(
        "mallory", tenant_id=tenant, reason="account locked"
    )
    assert closed == 1
    # A token refused with 4001 and no getToken() to ask for another: the client stops.
    state = await node.until(lambda line: line.get("state") == "closed")
    assert (state["code"], state["reason"]) == (4001, "account locked")
