"""The grpcurl recipes in docs/grpc.md, run as written against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.grpc import bearer
from support.paths import repository
from support.server import NO_LOAD_ALERTS, ServerProcess, serving
from support.waiting import UNIT, eventually
from support.ws import WsClient

from roomcast.v1 import admin_pb2, admin_pb2_grpc

GRPCURL_DIR = str(Path(sys.executable).parent)
RECIPE = re.compile(r"```sh\n(grpcurl .*?)```", re.DOTALL)
# grpcurl exits with the gRPC status code of a failed call plus 64; a
# Subscribe recipe ends by its own -max-time, which is DEADLINE_EXCEEDED (4).
DEADLINE_EXCEEDED_EXIT = 64 + 4


# Any fenced block; a ```json block right after a recipe (prose between is
# fine) is the response the recipe prints.
FENCED = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
# Values that differ from run to run; the documented ones are examples.
VARYING = {"id", "epoch", "time", "startedAt", "resolvedAt", "nodeId"}
RPC = re.compile(r"^\s*rpc (\w+)\(", re.MULTILINE)
SERVICE = re.compile(r"^service (\w+) \{", re.MULTILINE)


def recipes() -> list[str]:
    text = (repository() / "docs" / "grpc.md").read_text()
    found = RECIPE.findall(text)
    assert len(found) >= 19, "docs/grpc.md lost its grpcurl recipes"
    return found


def test_every_rpc_has_a_recipe() -> None:
    documented = "\n".join(recipes())
    missing = []
    for proto in sorted((repository() / "proto" / "roomcast" / "v1").glob("*.proto")):
        text = proto.read_text()
        for service in SERVICE.findall(text):
            missing += [
                f"{service}/{rpc}"
                for rpc in RPC.findall(text)
                if f"roomcast.v1.{service}/{rpc}" not in documented
            ]
    assert missing == []
    assert '"cluster": true' in documented


def recipes_with_responses() -> list[tuple[str, str | None]]:
    """Every recipe in document order, with the response shown after it, if any."""
    text = (repository() / "docs" / "grpc.md").read_text()
    pairs: list[tuple[str, str | None]] = []
    previous_was_recipe = False
    for language, body in FENCED.findall(text):
        if language == "sh" and body.startswith("grpcurl "):
            pairs.append((body, None))
            previous_was_recipe = True
            continue
        if language == "json" and previous_was_recipe:
            pairs[-1] = (pairs[-1][0], body)
        previous_was_recipe = False
    assert [recipe for recipe, _ in pairs] == recipes()
    return pairs


def run_recipe(server: ServerProcess, recipe: str) -> subprocess.CompletedProcess[str]:
    """Run a recipe through bash and the real grpcurl, pointed at ``server``."""
    host, port = server.target.rsplit(":", 1)
    command = recipe.replace("localhost:50051", f"{host}:{port}")
    if "-max-time" in command:
        command = re.sub(r"-max-time \d+", f"-max-time {2 * UNIT:g}", command)
    environment = dict(os.environ)
    environment |= {
        "PATH": f"{GRPCURL_DIR}:{environment.get('PATH', '')}",
        "ADMIN_TOKEN": server.token("root", "super_admin"),
        "USER_TOKEN": server.token("alice", "user", tenant="acme"),
        "SERVICE_TOKEN": server.token("backend", "service"),
    }
    environment["TOKEN"] = environment["USER_TOKEN"]
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30 * UNIT,
        check=False,
    )
    if "Subscribe" in command:
        assert result.returncode == DEADLINE_EXCEEDED_EXIT, result.stderr
        assert '"subscribed"' in result.stdout
        assert "DeadlineExceeded" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "ERROR" not in result.stderr
    if "GetMetrics" in command:
        [metrics] = json_stream(result.stdout)
        assert metrics["nodes"] == [metrics["nodeId"]]  # one node, with or without cluster
    return result


class LiveClients:
    """The WebSocket clients that some recipes act on, opened before them and checked after.

    DisconnectUser closes alice's connection, so one is opened for it. With
    ``alerts`` (a node that alerts above one connection), GetAlerts runs while
    two browsers are connected and the alert fires, and ClearAlerts once they
    left and the alert resolved.
    """

    def __init__(self, server: ServerProcess, *, alerts: bool = False) -> None:
        self.server = server
        self.alerts = alerts
        self.crowd: list[WsClient] = []
        self.alice: WsClient | None = None

    async def connect(self, sub: str) -> WsClient:
        client = await WsClient.connect(self.server, self.server.token(sub, "user", tenant="acme"))
        await client.next("connection.confirmed")
        return client

    async def until_alerts(self, firing: int) -> None:
        """Wait until the node reports ``firing`` alerts firing."""
        async with self.server.channel() as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            metadata = bearer(self.server.token("root", "super_admin"))

            async def reported() -> bool:
                reply = await admin.GetAlerts(admin_pb2.GetAlertsRequest(), metadata=metadata)
                return len(reply.firing) == firing

            await eventually(reported, every=0.1 * UNIT)

    async def before(self, recipe: str) -> None:
        if self.alerts and "AdminService/GetAlerts" in recipe:
            self.crowd = [await self.connect("bob"), await self.connect("carol")]
            await self.until_alerts(firing=1)
        if self.alerts and "AdminService/ClearAlerts" in recipe:
            for client in self.crowd:
                await client.close()
            await self.until_alerts(firing=0)
        if "AdminService/DisconnectUser" in recipe:
            self.alice = await self.connect("alice")

    async def after(self, recipe: str) -> None:
        if "AdminService/DisconnectUser" in recipe:
            assert self.alice is not None
            assert await self.alice.closed() == 4001
            assert self.alice.close_reason == "account locked"

    async def run(self, recipe: str) -> subprocess.CompletedProcess[str]:
        """Run ``recipe`` (in a thread: the clients read on this loop meanwhile)."""
        await self.before(recipe)
        result = await asyncio.to_thread(run_recipe, self.server, recipe)
        await self.after(recipe)
        return result

    async def close(self) -> None:
        for client in [*self.crowd, *([self.alice] if self.alice else [])]:
            await client.close()


@pytest.mark.parametrize("recipe", recipes(), ids=lambda r: r.split("\n")[0][-60:])
async def test_recipe_runs_as_written(server: ServerProcess, recipe: str) -> None:
    live = LiveClients(server)
    try:
        await live.run(recipe)
    finally:
        await live.close()


def json_stream(text: str) -> list[Any]:
    """The JSON values printed one after the other (a stream prints several)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def normalized(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<varies>" if k in VARYING else normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(item) for item in value]
    return value


@pytest.fixture(scope="module")
def fresh_server() -> Iterator[ServerProcess]:
    """A server that has seen nothing but the recipes, run in document order.

    It alerts above one connection, as the GetAlerts recipe says, and only
    then: the rules on load (CPU, memory, latency, errors) are off, so that a
    busy machine does not add alerts to the documented response.
    """
    with serving(
        env={
            "ROOMCAST_METRICS_INTERVAL": "0.2",
            "ROOMCAST_ALERT_MAX_CONNECTIONS": "1",
            **NO_LOAD_ALERTS,
        }
    ) as process:
        yield process


async def test_recipes_in_order_print_the_documented_responses(
    fresh_server: ServerProcess,
) -> None:
    shown = 0
    live = LiveClients(fresh_server, alerts=True)
    try:
        for recipe, documented in recipes_with_responses():
            result = await live.run(recipe)
            if documented is None:
                continue
            shown += 1
            assert normalized(json_stream(result.stdout)) == normalized(json_stream(documented)), (
                f"{recipe}\nprints\n{result.stdout}"
            )
    finally:
        await live.close()
    assert shown >= 11, "docs/grpc.md lost the responses shown after its recipes"
