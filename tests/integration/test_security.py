"""Security monitoring against real servers: failed logins on both ports alert
once per window, trusted proxies, new locations and GeoIP
(docs/operations.md#security-monitoring).

The servers trust 127.0.0.1 as a proxy, so each test speaks for its own
client addresses with X-Forwarded-For and no test's failures count for
another's. The addresses are documentation ranges: they only ever appear in
headers, no traffic goes to them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf.json_format import MessageToDict
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from prometheus_client.parser import text_string_to_metric_families
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess, serving
from support.waiting import UNIT
from support.ws import WsClient
from websockets.asyncio.client import connect

from roomcast.auth import mint_token
from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

OTHER_SECRET = "not-the-server-secret-0123456789abcdef"
SERVE = (sys.executable, "-m", "roomcast", "serve", "--host", "127.0.0.1", "--grpc-port", "0")


@pytest.fixture(scope="module")
def geoip_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GeoLite2-City shaped database that knows 198.51.100.0/24 and 2001:db8:2::/48."""
    path = tmp_path_factory.mktemp("geoip") / "city.mmdb"
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    writer.insert_network(
        IPSet(["198.51.100.0/24"]),
        {
            "country": {"iso_code": "NZ", "names": {"en": "New Zealand"}},
            "city": {"names": {"en": "Wellington"}},
        },
    )
    writer.insert_network(
        IPSet(["2001:db8:2::/48"]), {"country": {"iso_code": "DE", "names": {"en": "Germany"}}}
    )
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def guarded(geoip_database: Path) -> Iterator[ServerProcess]:
    """A server behind a "proxy" on 127.0.0.1, with the GeoIP database."""
    with serving(
        env={
            "ROOMCAST_TRUSTED_PROXIES": "127.0.0.1, ::1",
            "ROOMCAST_GEOIP_DATABASE": str(geoip_database),
        }
    ) as server:
        yield server


@pytest.fixture(scope="module")
def untrusting() -> Iterator[ServerProcess]:
    """A server with the defaults: it trusts no proxy."""
    with serving() as server:
        yield server


def bad_tokens(server: ServerProcess, sub: str = "mallory") -> dict[str, str | None]:
    """One of each kind of failure (None: no token); four of them claim ``sub``."""
    claims = {"sub": sub, "roles": ["user"], "tenant_id": "acme", "exp": time.time() + 60}
    return {
        "forged": mint_token(OTHER_SECRET, subject=sub, roles=["user"], tenant="acme"),
        "expired": server.token(sub, "user", tenant="acme", ttl=-10),
        "malformed": "not.a.jwt",
        "none-alg": jwt.encode(claims, "", algorithm="none"),
        "no-tenant": mint_token(server.secret, subject=sub, roles=["user"]),
        "missing": None,
    }


async def ws_client(server: ServerProcess, forwarded: str | None = None) -> WsClient:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return WsClient(await connect(server.ws_url, additional_headers=headers))


async def ws_fail(server: ServerProcess, token: str | None, forwarded: str | None = None) -> None:
    client = await ws_client(server, forwarded)
    if token is None:
        await client.send({"type": "join_room", "room": "chat.lobby"})
    else:
        await client.send({"type": "auth", "token": token})
    assert await client.closed() in (4001, 4002)


async def grpc_fail(
    channel: grpc.aio.Channel, token: str | None, forwarded: str | None = None
) -> None:
    metadata = [*bearer(token)] if token is not None else []
    if forwarded is not None:
        metadata.append(("x-forwarded-for", forwarded))
    stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
    request = realtime_pb2.PublishRequest(room="global.lobby", event="hello", payload=payload())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Publish(request, metadata=tuple(metadata))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def events(stream: Stream, name: str) -> list[dict[str, Any]]:
    """Payloads of the stream's events called ``name``."""
    return [MessageToDict(e.payload) for e in stream.events if e.event == name]


async def settle(server: ServerProcess, channel: grpc.aio.Channel, stream: Stream) -> None:
    """Publish a marker to platform.security and wait for it: whatever the
    server published before it has arrived."""
    marker = f"m{time.monotonic_ns()}"
    stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
    await stub.Publish(
        realtime_pb2.PublishRequest(
            room="platform.security", event="test.marker", payload=payload(marker=marker)
        ),
        metadata=bearer(server.token("ops", "service")),
    )
    await stream.until(
        lambda: any(p.get("marker") == marker for p in events(stream, "test.marker"))
    )


def auth_failures(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=10 * UNIT) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "roomcast_auth_failures":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    raise AssertionError("roomcast_auth_failures is not exposed")


def assert_no_token_in(tokens: dict[str, str | None], *texts: str) -> None:
    for token in tokens.values():
        if token is None:
            continue
        for text in texts:
            assert token not in text
            # Not even the signature or the claims part of a real JWT.
            for part in token.split(".")[1:]:
                if len(part) > 16:
                    assert part not in text


async def test_six_bad_tokens_over_websocket_make_exactly_one_alert(
    guarded: ServerProcess,
) -> None:
    ip = "198.51.100.61"
    tokens = bad_tokens(guarded, "mallory")
    before = auth_failures(guarded)
    root = await WsClient.connect(guarded, guarded.token("root", "super_admin"))
    await root.next("connection.confirmed")
    joined = await root.request({"type": "join_room", "room": "platform.security"})
    assert joined["type"] == "room_joined"
    async with guarded.channel() as channel:
        security = await Stream(
            channel, guarded.token("root", "super_admin"), ["platform.security"]
        ).ready()
        for token in tokens.values():
            await ws_fail(guarded, token, forwarded=f"{ip}, 127.0.0.1")
        await security.until(lambda: events(security, "security.alert"))
        # Failing on within the window: counted, but no second alert.
        for token in list(tokens.values())[:3]:
            await ws_fail(guarded, token, forwarded=ip)
        await settle(guarded, channel, security)
        alerts = [a for a in events(security, "security.alert") if a["ip_address"] == ip]
        assert len(alerts) == 1, alerts
        alert = alerts[0]
        assert alert["type"] == "failed_login"
        assert alert["attempts"] == 6
        assert alert["window"] == 60
        assert alert["first_seen"] <= alert["last_seen"] <= time.time() + 1
        assert alert["subjects"] == [{"subject": "mallory", "attempts": 4}]
        # The super admin's WebSocket, in platform.security, saw the same one.
        frame = await root.wait(
            lambda: next((f for f in root.of_type("event") if f["event"] == "security.alert"), None)
        )
        assert frame["room"] == "platform.security"
        assert frame["payload"]["ip_address"] == ip
        assert_no_token_in(tokens, json.dumps(alerts), json.dumps(frame), guarded.log)
        security.cancel()
    assert auth_failures(guarded) - before == 9
    await root.close()


async def test_six_bad_tokens_over_grpc_make_exactly_one_alert(guarded: ServerProcess) -> None:
    ip = "2001:db8:77::6"
    tokens = bad_tokens(guarded, "trudy")
    before = auth_failures(guarded)
    async with guarded.channel() as channel:
        security = await Stream(
            channel, guarded.token("root", "super_admin"), ["platform.security"]
        ).ready()
        for token in tokens.values():
            # A forged entry on the left, a trusted second proxy on the right.
            await grpc_fail(channel, token, forwarded=f"203.0.113.250, {ip}, ::1")
        await security.until(lambda: events(security, "security.alert"))
        for token in list(tokens.values())[:3]:
            await grpc_fail(channel, token, forwarded=ip)
        await settle(guarded, channel, security)
        alerts = [a for a in events(security, "security.alert") if a["ip_address"] == ip]
        assert len(alerts) == 1, alerts
        assert alerts[0]["attempts"] == 6
        assert alerts[0]["subjects"] == [{"subject": "trudy", "attempts": 4}]
        assert_no_token_in(tokens, json.dumps(alerts), guarded.log)
        security.cancel()
    assert auth_failures(guarded) - before == 9


async def test_five_failures_make_no_alert(guarded: ServerProcess) -> None:
    ip = "198.51.100.55"
    tokens = list(bad_tokens(guarded, "oscar").values())[:5]
    async with guarded.channel() as channel:
        security = await Stream(
            channel, guarded.token("root", "super_admin"), ["platform.security"]
        ).ready()
        for token in tokens[:3]:
            await ws_fail(guarded, token, forwarded=ip)
        for token in tokens[3:]:
            await grpc_fail(channel, token, forwarded=ip)
        await settle(guarded, channel, security)
        assert not [a for a in events(security, "security.alert") if a["ip_address"] == ip]
        # Both ports count for the same address: a sixth failure on either alerts.
        await grpc_fail(channel, None, forwarded=ip)
        await security.until(
            lambda: [a for a in events(security, "security.alert") if a["ip_address"] == ip]
        )
        security.cancel()


async def test_a_forwarded_header_from_an_untrusted_peer_is_ignored(
    untrusting: ServerProcess,
) -> None:
    tokens = bad_tokens(untrusting)
    async with untrusting.channel() as channel:
        security = await Stream(
            channel, untrusting.token("root", "super_admin"), ["platform.security"]
        ).ready()
        # Each failure claims another address; all come from 127.0.0.1.
        for n, token in enumerate(tokens.values()):
            if n % 2:
                await ws_fail(untrusting, token, forwarded=f"203.0.113.{n}")
            else:
                await grpc_fail(channel, token, forwarded=f"203.0.113.{n}")
        await security.until(lambda: events(security, "security.alert"))
        await settle(untrusting, channel, security)
        alerts = events(security, "security.alert")
        assert [(a["ip_address"], a["attempts"]) for a in alerts] == [("127.0.0.1", 6)]
        security.cancel()


async def test_a_new_network_is_announced_once_to_the_platform_and_the_user(
    guarded: ServerProcess,
) -> None:
    user = "nora"
    token = guarded.token(user, "user", tenant="acme")
    private = f"user.{user}.private"
    async with guarded.channel() as channel:
        security = await Stream(
            channel, guarded.token("root", "super_admin"), ["platform.security"]
        ).ready()
        own = await Stream(
            channel, guarded.token("backend", "service"), [private], tenant_id="acme"
        ).ready()

        async def visit(forwarded: str) -> WsClient:
            client = await ws_client(guarded, forwarded)
            await client.send({"type": "auth", "token": token})
            await client.next("connection.confirmed")
            return client

        # The first connection ever seen is recorded silently; the same /24 is
        # no news; a client's own left-most entry is not believed.
        for forwarded in ("203.0.113.7", "203.0.113.99", "198.51.100.200, 203.0.113.8"):
            await (await visit(forwarded)).close()
        moved = await visit("198.51.100.7")
        # The connection that moved is in its own private room: it is told too.
        told = await moved.next("event")
        assert (told["room"], told["event"]) == (private, "security.new_location")
        assert told["payload"]["network"] == "198.51.100.0/24"
        await moved.close()
        await (await visit("198.51.100.8")).close()  # now known
        await settle(guarded, channel, security)
        found = [e for e in events(security, "security.new_location") if e["user_id"] == user]
        assert len(found) == 1, found
        event = found[0]
        assert event["type"] == "new_location"
        assert event["tenant_id"] == "acme"
        assert event["ip_address"] == "198.51.100.7"
        assert event["network"] == "198.51.100.0/24"
        assert event["known_networks"] == 1
        # The generated GeoIP database placed it.
        assert (event["country_code"], event["country"], event["city"]) == (
            "NZ",
            "New Zealand",
            "Wellington",
        )
        # The user's own room got the same, once; their connection saw it too.
        await own.until(lambda: events(own, "security.new_location"))
        assert events(own, "security.new_location") == [event]
        assert (own.events[0].room, own.events[0].tenant_id) == (private, "acme")
        security.cancel()
        own.cancel()


async def test_new_locations_are_per_tenant_and_ipv6_48s(guarded: ServerProcess) -> None:
    async with guarded.channel() as channel:
        security = await Stream(
            channel, guarded.token("root", "super_admin"), ["platform.security"]
        ).ready()

        async def visit(tenant: str, forwarded: str) -> None:
            client = await ws_client(guarded, forwarded)
            await client.send(
                {"type": "auth", "token": guarded.token("ivy", "user", tenant=tenant)}
            )
            await client.next("connection.confirmed")
            await client.close()

        await visit("acme", "2001:db8:1:1::1")
        await visit("globex", "2001:db8:2::1")  # globex's ivy: a first sighting
        await visit("acme", "2001:db8:1:ffff::2")  # same /48
        await visit("acme", "2001:db8:2:5::1")  # new /48, known to the GeoIP database
        await settle(guarded, channel, security)
        found = [e for e in events(security, "security.new_location") if e["user_id"] == "ivy"]
        assert [(e["tenant_id"], e["network"]) for e in found] == [("acme", "2001:db8:2::/48")]
        assert found[0]["country"] == "Germany"
        assert "city" not in found[0]
        security.cancel()


def test_an_unreadable_geoip_database_refuses_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "city.mmdb"
    bad.write_text("not a database\n" * 100)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    for path, expected in ((tmp_path / "missing.mmdb", "cannot read"), (bad, "not a MaxMind")):
        result = subprocess.run(
            [*SERVE, "--http-port", "0", "--jwt-secret", OTHER_SECRET],
            capture_output=True,
            text=True,
            env={**environment, "ROOMCAST_GEOIP_DATABASE": str(path)},
            timeout=30 * UNIT,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert result.stderr.startswith("roomcast: geoip_database: ")
        assert expected in result.stderr
        assert str(path) in result.stderr
