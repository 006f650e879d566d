"""Every kind of principal, every verb, its own tenant, another tenant and the platform.

One shared server answers the whole matrix, a test per principal and verb
group. The expected outcomes are written out below from docs/grpc.md (the
built-in policy table, "What this means for gRPC callers", each verb's
section) and docs/protocol.md (the WebSocket frames); none is computed by
roomcast's own policy code.

The principal ``acme_super_admin`` is the token of the hardening issue: role
``super_admin`` with ``tenant_id`` acme. It used to be read as a platform
super admin (its tenant ignored), and could list, read and act in globex;
it must act exactly as acme's ``tenant_admin``, and no more.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess
from support.waiting import UNIT
from support.ws import WsClient

from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2, realtime_pb2_grpc

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Kind:
    """What a token says: ``sub``, ``roles`` and ``tenant_id``."""

    sub: str
    roles: tuple[str, ...]
    tenant: str | None


KINDS: dict[str, Kind] = {
    "platform_admin": Kind("root", ("super_admin",), None),
    "acme_super_admin": Kind("sam", ("super_admin",), "acme"),
    "platform_service": Kind("backend", ("service",), None),
    "acme_service": Kind("billing", ("service",), "acme"),
    "acme_admin": Kind("carol", ("tenant_admin",), "acme"),
    "acme_user": Kind("alice", ("user",), "acme"),
}
COLUMNS = tuple(KINDS)

# The rooms every principal is tried on: the room's name ({id} is unique per
# test) and the tenant_id sent over gRPC (the room's tenant where its name
# does not carry it). A WebSocket frame names no tenant: there, a name means
# the room in the caller's own tenant.
TARGETS: dict[str, tuple[str, str]] = {
    "platform.admins": ("platform.admins", ""),
    "platform.security": ("platform.security", ""),
    "performance.dashboard": ("performance.dashboard", ""),
    "tenant.acme.admins": ("tenant.acme.admins", ""),
    "tenant.acme.users": ("tenant.acme.users", ""),
    "user.alice.private@acme": ("user.alice.private", "acme"),
    "chat@acme": ("chat.{id}", "acme"),
    "tenant.globex.admins": ("tenant.globex.admins", ""),
    "tenant.globex.users": ("tenant.globex.users", ""),
    "user.gus.private@globex": ("user.gus.private", "globex"),
    "chat@globex": ("chat.{id}", "globex"),
    "global": ("global.{id}", ""),
}

# One cell per principal, in the order of COLUMNS:
#   1st  S  may subscribe over gRPC, and read history and presence    -  PERMISSION_DENIED
#   2nd  P  may publish over gRPC (Publish, PublishBatch)               -  PERMISSION_DENIED
#   3rd  over the WebSocket bridge:
#        J  join_room, history, presence answered; send_message as a member sent
#        j  join_room, history, presence answered; send_message forbidden
#        -  join_room, history, presence forbidden; send_message not_member
#        ?  bad_request everywhere: a platform connection names no tenant
#        .  not tried: a frame cannot name another tenant's room of this kind
# fmt: off
#                              platform acme     platform acme     acme     acme
#                              admin    super    service  service  admin    user
MATRIX: dict[str, tuple[str, ...]] = {
    "platform.admins":         ("SPJ",   "---",   "SPJ",   "---",   "---",   "---"),
    "platform.security":       ("SPJ",   "---",   "SPJ",   "---",   "---",   "---"),
    "performance.dashboard":   ("S-j",   "---",   "SPJ",   "---",   "---",   "---"),
    "tenant.acme.admins":      ("S-j",   "S-j",   "SPJ",   "-P-",   "S-j",   "---"),
    "tenant.acme.users":       ("---",   "SPJ",   "SPJ",   "SPJ",   "SPJ",   "S-j"),
    "user.alice.private@acme": ("--?",   "---",   "SP?",   "-P-",   "---",   "S-j"),
    "chat@acme":               ("--?",   "S-J",   "SP?",   "SPJ",   "S-J",   "S-J"),
    "tenant.globex.admins":    ("S-j",   "---",   "SPJ",   "---",   "---",   "---"),
    "tenant.globex.users":     ("---",   "---",   "SPJ",   "---",   "---",   "---"),
    "user.gus.private@globex": ("--.",   "--.",   "SP.",   "--.",   "--.",   "--."),
    "chat@globex":             ("--.",   "--.",   "SP.",   "--.",   "--.",   "--."),
    "global":                  ("S-J",   "S-J",   "SPJ",   "SPJ",   "S-J",   "S-J"),
}

# What connection.confirmed says: tenant_id, roles, and the rooms joined on connect.
CONFIRMED: dict[str, tuple[str, list[str], set[str]]] = {
    "platform_admin":   ("", ["super_admin"], {"platform.admins"}),
    "acme_super_admin": ("acme", ["tenant_admin"], {
        "user.sam.private", "user.sam.notifications",
        "tenant.acme.users", "tenant.acme.notifications", "tenant.acme.admins",
    }),
    "platform_service": ("", ["service"], set()),
    "acme_service":     ("acme", ["service"], {
        "user.billing.private", "user.billing.notifications",
        "tenant.acme.users", "tenant.acme.notifications",
    }),
    "acme_admin":       ("acme", ["tenant_admin"], {
        "user.carol.private", "user.carol.notifications",
        "tenant.acme.users", "tenant.acme.notifications", "tenant.acme.admins",
    }),
    "acme_user":        ("acme", ["user"], {
        "user.alice.private", "user.alice.notifications",
        "tenant.acme.users", "tenant.acme.notifications",
    }),
}

# The operators' verbs, by the tenant_id of the request: "", "acme", "globex".
#   +  allowed    -  PERMISSION_DENIED    I  INVALID_ARGUMENT
# ListRooms, GetAlerts, DisconnectUser: platform-level callers anywhere; a
# tenant's services and admins in their own tenant only.
OPERATORS: dict[str, str] = {
    "platform_admin":   "+++",
    "acme_super_admin": "++-",
    "platform_service": "+++",
    "acme_service":     "++-",
    "acme_admin":       "++-",
    "acme_user":        "---",
}
# TrackActivity: services only; a platform service must name the tenant.
TRACK_ACTIVITY: dict[str, str] = {
    "platform_admin":   "---",
    "acme_super_admin": "---",
    "platform_service": "I++",
    "acme_service":     "++-",
    "acme_admin":       "---",
    "acme_user":        "---",
}
# GetMetrics and ClearAlerts: platform-level callers only.
PLATFORM_ONLY: dict[str, bool] = {
    "platform_admin": True,
    "acme_super_admin": False,
    "platform_service": True,
    "acme_service": False,
    "acme_admin": False,
    "acme_user": False,
}
# The tenants whose rooms ListRooms shows, by tenant_id "", "acme", "globex"
# (a chat room with history in acme and in globex; None: refused).
LISTED: dict[str, tuple[list[str] | None, ...]] = {
    "platform_admin":   (["acme", "globex"], ["acme"], ["globex"]),
    "acme_super_admin": (["acme"], ["acme"], None),
    "platform_service": (["acme", "globex"], ["acme"], ["globex"]),
    "acme_service":     (["acme"], ["acme"], None),
    "acme_admin":       (["acme"], ["acme"], None),
    "acme_user":        (None, None, None),
}
# Whose tenant.{t}.admins events a Subscribe to the pattern tenant.*.admins
# delivers (no tenant_id), and whether naming tenant_id globex is accepted.
ADMINS_PATTERN: dict[str, tuple[list[str], bool]] = {
    "platform_admin":   (["acme", "globex"], True),
    "acme_super_admin": (["acme"], False),
    "platform_service": (["acme", "globex"], True),
    "acme_service":     ([], False),
    "acme_admin":       (["acme"], False),
    "acme_user":        ([], False),
}
# fmt: on
TENANT_IDS = ("", "acme", "globex")
OUTCOMES = {"+": OK, "-": DENIED, "I": INVALID}


def token(server: ServerProcess, kind: str) -> str:
    """A token for one of :data:`KINDS`."""
    who = KINDS[kind]
    return server.token(who.sub, *who.roles, tenant=who.tenant)


def cell(target: str, kind: str) -> str:
    """The matrix cell of ``kind`` on ``target``."""
    return MATRIX[target][COLUMNS.index(kind)]


def is_service(kind: str) -> bool:
    """Whether ``kind`` carries the role service."""
    return "service" in KINDS[kind].roles


async def attempt(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """How a unary call ended: its status and details."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return OK, ""


async def subscribe(
    channel: grpc.aio.Channel, token: str, rooms: list[str], tenant_id: str
) -> tuple[grpc.StatusCode, str]:
    """How a Subscribe ended before or at its ``subscribed`` marker."""
    stream = Stream(channel, token, rooms, tenant_id=tenant_id)
    try:
        await stream.ready()
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    finally:
        stream.cancel()
    return OK, ""


def expect(
    got: tuple[grpc.StatusCode, str], allowed: bool, kind: str, target: str, verb: str
) -> None:
    """The outcome the matrix gives; a refusal across tenants says it is one."""
    code, details = got
    assert code == (OK if allowed else DENIED), f"{kind} {verb} {target}: {code} {details}"
    if allowed or KINDS[kind].tenant is None or not target.endswith("globex"):
        return
    # Refused by isolation, before any rule: naming globex, or a room of it.
    assert details in (
        "tenant_id: callers of tenant 'acme' act only in it",
        f"room {TARGETS[target][0]!r} belongs to another tenant",
    ), f"{kind} {verb} {target}: {details}"


def rooms(unique: Callable[[str], str]) -> dict[str, tuple[str, str]]:
    """:data:`TARGETS` with this test's ``{id}``."""
    suffix = unique("m")
    return {key: (room.replace("{id}", suffix), tenant) for key, (room, tenant) in TARGETS.items()}


def test_the_tables_give_the_scoped_super_admin_exactly_acmes_tenant_admin_rights() -> None:
    assert list(MATRIX) == list(TARGETS)
    assert all(len(row) == len(COLUMNS) for row in MATRIX.values())
    # The decided semantics, read off the tables above rather than assumed by them.
    sam, carol = "acme_super_admin", "acme_admin"
    assert [cell(target, sam) for target in MATRIX] == [cell(target, carol) for target in MATRIX]
    assert CONFIRMED[sam][:2] == CONFIRMED[carol][:2]
    assert OPERATORS[sam] == OPERATORS[carol]
    assert TRACK_ACTIVITY[sam] == TRACK_ACTIVITY[carol]
    assert PLATFORM_ONLY[sam] == PLATFORM_ONLY[carol]
    assert LISTED[sam] == LISTED[carol]
    assert ADMINS_PATTERN[sam] == ADMINS_PATTERN[carol]


# -- gRPC: the rooms -----------------------------------------------------------


@pytest.mark.parametrize("kind", COLUMNS)
async def test_subscribe_history_and_presence(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    admin: admin_pb2_grpc.AdminServiceStub,
    unique: Callable[[str], str],
    kind: str,
) -> None:
    key, metadata = token(server, kind), bearer(token(server, kind))
    placed = rooms(unique)
    outcomes = await asyncio.gather(
        *(
            call
            for room, tenant_id in placed.values()
            for call in (
                subscribe(channel, key, [room], tenant_id),
                attempt(
                    admin.GetHistory(
                        admin_pb2.GetHistoryRequest(room=room, tenant_id=tenant_id),
                        metadata=metadata,
                    )
                ),
                attempt(
                    admin.GetPresence(
                        admin_pb2.GetPresenceRequest(room=room, tenant_id=tenant_id),
                        metadata=metadata,
                    )
                ),
            )
        )
    )
    verbs = ("Subscribe", "GetHistory", "GetPresence")
    for index, target in enumerate(placed):
        for offset, verb in enumerate(verbs):
            got = outcomes[index * len(verbs) + offset]
            expect(got, cell(target, kind)[0] == "S", kind, target, verb)


@pytest.mark.parametrize("kind", COLUMNS)
async def test_publish_publish_batch_join_room_and_leave_room(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
    kind: str,
) -> None:
    metadata = bearer(token(server, kind))
    placed = rooms(unique)
    requests = [
        realtime_pb2.PublishRequest(
            room=room, event="matrix.probe", payload=payload(kind=kind), tenant_id=tenant_id
        )
        for room, tenant_id in placed.values()
    ]
    singles = await asyncio.gather(
        *(attempt(realtime.Publish(request, metadata=metadata)) for request in requests)
    )
    batch = await realtime.PublishBatch(
        realtime_pb2.PublishBatchRequest(events=requests), metadata=metadata
    )
    # JoinRoom and LeaveRoom are for services that may publish to the room
    # (docs/grpc.md); nobody is connected as the user, so each moves nothing.
    calls = []
    for room, tenant_id in placed.values():
        fields = {"room": room, "tenant_id": tenant_id, "user_id": "nobody"}
        calls += [
            attempt(realtime.JoinRoom(realtime_pb2.JoinRoomRequest(**fields), metadata=metadata)),
            attempt(realtime.LeaveRoom(realtime_pb2.LeaveRoomRequest(**fields), metadata=metadata)),
        ]
    moves = await asyncio.gather(*calls)
    assert len(batch.results) == len(placed)
    for index, (target, single, result) in enumerate(
        zip(placed, singles, batch.results, strict=True)
    ):
        allowed = cell(target, kind)[1] == "P"
        expect(single, allowed, kind, target, "Publish")
        if allowed:
            assert result.HasField("published"), (target, result)
            assert result.published.offset >= 1
        else:
            assert result.error.code == "PERMISSION_DENIED", (target, result)
            assert result.error.message == single[1]
        may_move = is_service(kind) and allowed
        for verb, got in zip(
            ("JoinRoom", "LeaveRoom"), moves[2 * index : 2 * index + 2], strict=True
        ):
            assert got[0] == (OK if may_move else DENIED), f"{kind} {verb} {target}: {got}"


@pytest.mark.parametrize("kind", COLUMNS)
async def test_subscribe_to_a_pattern(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
    kind: str,
) -> None:
    delivered, may_name_globex = ADMINS_PATTERN[kind]
    probe, fence = unique("probe"), unique("global.fence")
    stream = await Stream(channel, token(server, kind), ["tenant.*.admins", fence]).ready()
    naming = await subscribe(channel, token(server, kind), ["tenant.*.admins"], "globex")
    publisher = bearer(token(server, "platform_service"))
    for room in ("tenant.acme.admins", "tenant.globex.admins", fence):
        await realtime.Publish(
            realtime_pb2.PublishRequest(room=room, event=probe), metadata=publisher
        )
    await stream.until(lambda: any(e.room == fence for e in stream.events))
    stream.cancel()
    assert [e.tenant_id for e in stream.events if e.event == probe and e.room != fence] == delivered
    assert naming[0] == (OK if may_name_globex else DENIED), naming


# -- gRPC: the operators' verbs ----------------------------------------------------


@pytest.mark.parametrize("kind", COLUMNS)
async def test_get_metrics_and_clear_alerts(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    admin: admin_pb2_grpc.AdminServiceStub,
    kind: str,
) -> None:
    metadata = bearer(token(server, kind))
    expected = OK if PLATFORM_ONLY[kind] else DENIED
    metrics = await attempt(
        realtime.GetMetrics(realtime_pb2.GetMetricsRequest(), metadata=metadata)
    )
    cleared = await attempt(admin.ClearAlerts(admin_pb2.ClearAlertsRequest(), metadata=metadata))
    assert (metrics[0], cleared[0]) == (expected, expected), (metrics, cleared)


@pytest.mark.parametrize("kind", COLUMNS)
async def test_list_rooms(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    admin: admin_pb2_grpc.AdminServiceStub,
    unique: Callable[[str], str],
    kind: str,
) -> None:
    room = unique("chat.listed")
    publisher = bearer(token(server, "platform_service"))
    for tenant in ("acme", "globex"):
        await realtime.Publish(
            realtime_pb2.PublishRequest(room=room, event="listed", tenant_id=tenant),
            metadata=publisher,
        )
    metadata = bearer(token(server, kind))
    for tenant_id, tenants in zip(TENANT_IDS, LISTED[kind], strict=True):
        request = admin_pb2.ListRoomsRequest(prefix=room, tenant_id=tenant_id)
        if tenants is None:
            got = await attempt(admin.ListRooms(request, metadata=metadata))
            assert got[0] == DENIED, (tenant_id, got)
            continue
        listed = await admin.ListRooms(request, metadata=metadata)
        assert [(r.tenant_id, r.name) for r in listed.rooms] == [(t, room) for t in tenants]


@pytest.mark.parametrize("kind", COLUMNS)
async def test_get_alerts_track_activity_and_disconnect_user(
    server: ServerProcess, admin: admin_pb2_grpc.AdminServiceStub, kind: str
) -> None:
    metadata = bearer(token(server, kind))
    for tenant_id, operator, tracked in zip(
        TENANT_IDS, OPERATORS[kind], TRACK_ACTIVITY[kind], strict=True
    ):
        alerts = await attempt(
            admin.GetAlerts(admin_pb2.GetAlertsRequest(tenant_id=tenant_id), metadata=metadata)
        )
        disconnect = await attempt(
            admin.DisconnectUser(
                admin_pb2.DisconnectUserRequest(user_id="nobody", tenant_id=tenant_id),
                metadata=metadata,
            )
        )
        activity = await attempt(
            admin.TrackActivity(
                admin_pb2.TrackActivityRequest(
                    user_id="alice", tenant_id=tenant_id, action="matrix.probe"
                ),
                metadata=metadata,
            )
        )
        assert (alerts[0], disconnect[0]) == (OUTCOMES[operator],) * 2, (
            tenant_id,
            alerts,
            disconnect,
        )
        assert activity[0] == OUTCOMES[tracked], (tenant_id, activity)


# -- WebSocket -----------------------------------------------------------------


def ws_targets(placed: dict[str, tuple[str, str]], kind: str) -> list[tuple[str, str, str]]:
    """(target, room, WebSocket cell) of the rooms a frame can name."""
    return [
        (target, room, cell(target, kind)[2])
        for target, (room, _) in placed.items()
        if cell(target, kind)[2] != "."
    ]


def ws_refusal(reply: dict[str, Any], code: str, what: str) -> None:
    """``reply`` is an error frame with ``code``."""
    assert (reply["type"], reply.get("code")) == ("error", code), (what, reply)


@pytest.mark.parametrize("kind", COLUMNS)
async def test_websocket(server: ServerProcess, unique: Callable[[str], str], kind: str) -> None:
    # Two connections, so neither comes near the per-connection frame rate.
    joiner = await WsClient.connect(server, token(server, kind))
    reader = await WsClient.connect(server, token(server, kind))
    try:
        confirmed = await joiner.next("connection.confirmed")
        await reader.next("connection.confirmed")
        tenant, roles, own = CONFIRMED[kind]
        assert (confirmed["tenant_id"], confirmed["roles"]) == (tenant, roles)
        assert set(confirmed["rooms"]) == own
        for target, room, expected in ws_targets(rooms(unique), kind):
            what = f"{kind} {target}"
            joined = await joiner.request({"type": "join_room", "room": room})
            sent = await joiner.request(
                {"type": "send_message", "event": "matrix.probe", "rooms": [room]}
            )
            history = await reader.request({"type": "history", "room": room})
            presence = await reader.request({"type": "presence", "room": room})
            if expected in "Jj":
                assert joined["type"] == "room_joined", (what, joined)
                assert history["type"] == "history", (what, history)
                assert presence["type"] == "presence", (what, presence)
                if expected == "J":
                    assert sent["type"] == "message_sent", (what, sent)
                    assert sent["offsets"][room] >= 1
                else:
                    ws_refusal(sent, "forbidden", what)
                continue
            code = "forbidden" if expected == "-" else "bad_request"
            for reply in (joined, history, presence):
                ws_refusal(reply, code, what)
            ws_refusal(sent, "not_member" if expected == "-" else "bad_request", what)
    finally:
        await joiner.close()
        await reader.close()


# -- the attack of the issue, with live connections -----------------------------


async def test_a_tenant_scoped_super_admin_disconnects_in_its_tenant_only(
    server: ServerProcess, admin: admin_pb2_grpc.AdminServiceStub, unique: Callable[[str], str]
) -> None:
    gus, dave = unique("gus"), unique("dave")
    globex_user = await WsClient.connect(server, server.token(gus, "user", tenant="globex"))
    acme_user = await WsClient.connect(server, server.token(dave, "user", tenant="acme"))
    for client in (globex_user, acme_user):
        await client.next("connection.confirmed")
    sam = bearer(token(server, "acme_super_admin"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await admin.DisconnectUser(
            admin_pb2.DisconnectUserRequest(user_id=gus, tenant_id="globex"), metadata=sam
        )
    assert refused.value.code() == DENIED
    assert refused.value.details() == "tenant_id: callers of tenant 'acme' act only in it"
    assert (await globex_user.request({"type": "ping"}))["type"] == "pong"  # still connected
    closed = await admin.DisconnectUser(
        admin_pb2.DisconnectUserRequest(user_id=dave, reason="account locked"), metadata=sam
    )
    assert closed.connections == 1
    assert await acme_user.closed() == 4001
    await globex_user.close()


# -- AdminService: bytes that are no request -------------------------------------

ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]


@pytest.mark.parametrize("method", list(ADMIN_SERVICE.methods), ids=lambda m: m.name)
async def test_undecodable_admin_requests_are_invalid_arguments(
    server: ServerProcess, channel: grpc.aio.Channel, method: Any
) -> None:
    call = channel.unary_unary(
        f"/{ADMIN_SERVICE.full_name}/{method.name}",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(b"\xff\xff\xff", metadata=bearer(token(server, "platform_service")))
    details = refused.value.details() or ""
    assert refused.value.code() == INVALID, details
    assert details.startswith(f"request: not a valid {method.input_type.name} ("), details
    for internal in ("DecodeError", "Unexpected", "<class"):
        assert internal not in details


# An out-of-date copy of admin.proto whose ListRoomsRequest.prefix is bytes:
# grpcurl then sends bytes that are no UTF-8 where the server reads a string.
STALE_PROTO = """\
syntax = "proto3";
package roomcast.v1;
message ListRoomsRequest { bytes prefix = 1; }
message ListRoomsResponse {}
service AdminService { rpc ListRooms(ListRoomsRequest) returns (ListRoomsResponse); }
"""


def test_grpcurl_with_a_stale_schema_gets_invalid_argument(
    server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "stale.proto").write_text(STALE_PROTO)
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "grpcurl"),
            *("-plaintext", "-import-path", str(tmp_path), "-proto", "stale.proto"),
            *("-H", f"authorization: Bearer {token(server, 'platform_service')}"),
            *("-d", '{"prefix": "//4="}', server.target),
            "roomcast.v1.AdminService/ListRooms",
        ],
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
        check=False,
    )
    # grpcurl exits with 64 plus the status code (3, INVALID_ARGUMENT).
    assert result.returncode == 64 + 3, result.stderr
    assert "Code: InvalidArgument" in result.stderr
    assert "Message: request: not a valid ListRoomsRequest (" in result.stderr
    assert "DecodeError" not in result.stderr
    assert "Unexpected" not in result.stderr
