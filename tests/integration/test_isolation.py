"""Tenant isolation over gRPC: who may follow and publish to which room.

The matrix below is the built-in room policy (``roomcast.policy.BUILTIN_RULES``)
written out cell by cell, as a real server answers it. Over gRPC nobody is a
room "member" (that is a WebSocket notion), so users never publish to chat,
document or global rooms here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import grpc
import pytest
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess

from roomcast.policy import BUILTIN_RULES
from roomcast.v1 import admin_pb2, admin_pb2_grpc, event_pb2, realtime_pb2, realtime_pb2_grpc


@dataclass(frozen=True)
class Caller:
    """Who a token says the caller is."""

    sub: str
    roles: tuple[str, ...]
    tenant: str | None


CALLERS = {
    "super_admin": Caller("root", ("super_admin",), None),
    "platform_service": Caller("platform-svc", ("service",), None),
    "acme_service": Caller("acme-svc", ("service",), "acme"),
    "acme_admin": Caller("acme-admin", ("tenant_admin",), "acme"),
    "alice@acme": Caller("alice", ("user",), "acme"),
    "bob@acme": Caller("bob", ("user",), "acme"),
    "carol@globex": Caller("carol", ("user",), "globex"),
    "globex_admin": Caller("globex-admin", ("tenant_admin",), "globex"),
    "globex_service": Caller("globex-svc", ("service",), "globex"),
}


def token(server: ServerProcess, who: str) -> str:
    """A token for one of :data:`CALLERS`."""
    caller = CALLERS[who]
    return server.token(caller.sub, *caller.roles, tenant=caller.tenant)


class Outcome(Enum):
    """What a cell of the matrix expects."""

    ALLOW = "allow"
    DENY = "deny"  # PERMISSION_DENIED naming the room
    FOREIGN = "foreign"  # PERMISSION_DENIED naming tenant_id: another tenant was named
    INVALID = "invalid"  # INVALID_ARGUMENT naming tenant_id: missing or not the room's


ALLOW, DENY, FOREIGN, INVALID = Outcome.ALLOW, Outcome.DENY, Outcome.FOREIGN, Outcome.INVALID


@dataclass(frozen=True)
class Cell:
    """One caller, one room (``{id}`` is unique per test), one tenant_id."""

    who: str
    room: str
    tenant_id: str
    subscribe: Outcome
    publish: Outcome

    @property
    def id(self) -> str:
        named = f"-tenant_id={self.tenant_id}" if self.tenant_id else ""
        return f"{self.who}-{self.room}{named}"


def _platform_cells() -> list[Cell]:
    cells = []
    for room in (
        "platform.admins",
        "platform.health",
        "platform.security",
        "performance.dashboard",
    ):
        # performance.dashboard is written by the server itself, a platform service.
        admin_publish = DENY if room == "performance.dashboard" else ALLOW
        cells += [
            Cell("super_admin", room, "", ALLOW, admin_publish),
            Cell("platform_service", room, "", ALLOW, ALLOW),
            Cell("platform_service", room, "acme", ALLOW, ALLOW),
            Cell("acme_service", room, "", DENY, DENY),
            Cell("acme_service", room, "acme", DENY, DENY),
            Cell("acme_service", room, "globex", FOREIGN, FOREIGN),
            Cell("acme_admin", room, "", DENY, DENY),
            Cell("alice@acme", room, "", DENY, DENY),
            Cell("bob@acme", room, "", DENY, DENY),
            Cell("carol@globex", room, "", DENY, DENY),
            Cell("globex_admin", room, "", DENY, DENY),
            Cell("globex_service", room, "", DENY, DENY),
        ]
    return cells


def _tenant_feed_cells() -> list[Cell]:
    cells = []
    for kind in ("users", "notifications"):
        acme, globex = f"tenant.acme.{kind}", f"tenant.globex.{kind}"
        cells += [
            # A super admin belongs to no tenant, so is no tenant's member.
            Cell("super_admin", acme, "", DENY, DENY),
            Cell("super_admin", acme, "acme", DENY, DENY),
            Cell("super_admin", acme, "globex", INVALID, INVALID),
            Cell("platform_service", acme, "", ALLOW, ALLOW),
            Cell("platform_service", globex, "", ALLOW, ALLOW),
            Cell("platform_service", acme, "acme", ALLOW, ALLOW),
            Cell("platform_service", acme, "globex", INVALID, INVALID),
            Cell("acme_service", acme, "", ALLOW, ALLOW),
            Cell("acme_service", acme, "acme", ALLOW, ALLOW),
            Cell("acme_service", globex, "", DENY, DENY),
            Cell("acme_service", acme, "globex", FOREIGN, FOREIGN),
            Cell("acme_service", globex, "acme", INVALID, INVALID),
            Cell("acme_admin", acme, "", ALLOW, ALLOW),
            Cell("acme_admin", globex, "", DENY, DENY),
            Cell("alice@acme", acme, "", ALLOW, DENY),
            Cell("alice@acme", globex, "", DENY, DENY),
            Cell("alice@acme", acme, "globex", FOREIGN, FOREIGN),
            Cell("bob@acme", acme, "", ALLOW, DENY),
            Cell("bob@acme", globex, "", DENY, DENY),
            Cell("carol@globex", globex, "", ALLOW, DENY),
            Cell("carol@globex", acme, "", DENY, DENY),
            Cell("globex_admin", globex, "", ALLOW, ALLOW),
            Cell("globex_admin", acme, "", DENY, DENY),
            Cell("globex_service", globex, "", ALLOW, ALLOW),
            Cell("globex_service", acme, "", DENY, DENY),
        ]
    return cells


def _tenant_admins_cells() -> list[Cell]:
    acme, globex = "tenant.acme.admins", "tenant.globex.admins"
    return [
        Cell("super_admin", acme, "", ALLOW, DENY),
        Cell("super_admin", globex, "", ALLOW, DENY),
        Cell("platform_service", acme, "", ALLOW, ALLOW),
        Cell("platform_service", globex, "", ALLOW, ALLOW),
        Cell("acme_service", acme, "", DENY, ALLOW),
        Cell("acme_service", globex, "", DENY, DENY),
        Cell("acme_admin", acme, "", ALLOW, DENY),
        Cell("acme_admin", globex, "", DENY, DENY),
        Cell("acme_admin", acme, "globex", FOREIGN, FOREIGN),
        Cell("alice@acme", acme, "", DENY, DENY),
        Cell("alice@acme", globex, "", DENY, DENY),
        Cell("bob@acme", acme, "", DENY, DENY),
        Cell("carol@globex", globex, "", DENY, DENY),
        Cell("carol@globex", acme, "", DENY, DENY),
        Cell("globex_admin", globex, "", ALLOW, DENY),
        Cell("globex_admin", acme, "", DENY, DENY),
        Cell("globex_service", globex, "", DENY, ALLOW),
        Cell("globex_service", acme, "", DENY, DENY),
    ]


def _user_feed_cells() -> list[Cell]:
    cells = []
    for kind in ("private", "notifications"):

        def room(user: str, kind: str = kind) -> str:
            return f"user.{user}.{kind}"

        cells += [
            # A user room lives in a tenant the name does not carry.
            Cell("super_admin", room("alice"), "", INVALID, INVALID),
            Cell("super_admin", room("alice"), "acme", DENY, DENY),
            Cell("platform_service", room("alice"), "", INVALID, INVALID),
            Cell("platform_service", room("alice"), "acme", ALLOW, ALLOW),
            Cell("platform_service", room("carol"), "globex", ALLOW, ALLOW),
            Cell("acme_service", room("alice"), "", DENY, ALLOW),
            Cell("acme_service", room("alice"), "acme", DENY, ALLOW),
            Cell("acme_service", room("alice"), "globex", FOREIGN, FOREIGN),
            Cell("acme_admin", room("alice"), "", DENY, DENY),
            Cell("acme_admin", room("acme-admin"), "", ALLOW, DENY),
            Cell("alice@acme", room("alice"), "", ALLOW, DENY),
            Cell("alice@acme", room("alice"), "acme", ALLOW, DENY),
            Cell("alice@acme", room("bob"), "", DENY, DENY),
            Cell("alice@acme", room("alice"), "globex", FOREIGN, FOREIGN),
            Cell("bob@acme", room("bob"), "", ALLOW, DENY),
            Cell("bob@acme", room("alice"), "", DENY, DENY),
            Cell("carol@globex", room("carol"), "", ALLOW, DENY),
            Cell("carol@globex", room("alice"), "", DENY, DENY),
            Cell("carol@globex", room("carol"), "acme", FOREIGN, FOREIGN),
            Cell("globex_admin", room("carol"), "", DENY, DENY),
            Cell("globex_admin", room("alice"), "acme", FOREIGN, FOREIGN),
            Cell("globex_service", room("carol"), "", DENY, ALLOW),
            Cell("globex_service", room("alice"), "acme", FOREIGN, FOREIGN),
        ]
    return cells


def _shared_cells() -> list[Cell]:
    cells = []
    for room in ("document.{id}.collaboration", "chat.{id}"):
        cells += [
            Cell("super_admin", room, "", INVALID, INVALID),
            Cell("super_admin", room, "acme", DENY, DENY),
            Cell("platform_service", room, "", INVALID, INVALID),
            Cell("platform_service", room, "acme", ALLOW, ALLOW),
            Cell("platform_service", room, "globex", ALLOW, ALLOW),
            Cell("acme_service", room, "", ALLOW, ALLOW),
            Cell("acme_service", room, "acme", ALLOW, ALLOW),
            Cell("acme_service", room, "globex", FOREIGN, FOREIGN),
            # Publishing is for services and members; nobody is a member over gRPC.
            Cell("acme_admin", room, "", ALLOW, DENY),
            Cell("acme_admin", room, "globex", FOREIGN, FOREIGN),
            Cell("alice@acme", room, "", ALLOW, DENY),
            Cell("alice@acme", room, "acme", ALLOW, DENY),
            Cell("alice@acme", room, "globex", FOREIGN, FOREIGN),
            Cell("bob@acme", room, "", ALLOW, DENY),
            Cell("carol@globex", room, "", ALLOW, DENY),
            Cell("carol@globex", room, "acme", FOREIGN, FOREIGN),
            Cell("globex_admin", room, "", ALLOW, DENY),
            Cell("globex_admin", room, "acme", FOREIGN, FOREIGN),
            Cell("globex_service", room, "", ALLOW, ALLOW),
            Cell("globex_service", room, "acme", FOREIGN, FOREIGN),
        ]
    return cells


def _global_cells() -> list[Cell]:
    room = "global.{id}"
    return [
        Cell("super_admin", room, "", ALLOW, DENY),
        Cell("platform_service", room, "", ALLOW, ALLOW),
        Cell("platform_service", room, "acme", ALLOW, ALLOW),
        Cell("acme_service", room, "", ALLOW, ALLOW),
        Cell("acme_service", room, "acme", ALLOW, ALLOW),
        Cell("acme_service", room, "globex", FOREIGN, FOREIGN),
        Cell("acme_admin", room, "", ALLOW, DENY),
        Cell("alice@acme", room, "", ALLOW, DENY),
        Cell("alice@acme", room, "globex", FOREIGN, FOREIGN),
        Cell("bob@acme", room, "", ALLOW, DENY),
        Cell("carol@globex", room, "", ALLOW, DENY),
        Cell("globex_admin", room, "", ALLOW, DENY),
        Cell("globex_service", room, "", ALLOW, ALLOW),
    ]


MATRIX = [
    *_platform_cells(),
    *_tenant_feed_cells(),
    *_tenant_admins_cells(),
    *_user_feed_cells(),
    *_shared_cells(),
    *_global_cells(),
]


def assert_refused(error: grpc.aio.AioRpcError | None, expected: Outcome, room: str) -> None:
    """The call ended as ``expected`` says, naming what was at fault."""
    assert error is not None
    details = error.details() or ""
    if expected is DENY:
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, details
        assert repr(room) in details
    elif expected is FOREIGN:
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, details
        assert details.startswith("tenant_id:")
    else:
        assert expected is INVALID
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith("tenant_id:")


def test_matrix_covers_every_builtin_kind_for_every_caller() -> None:
    covered = {
        (rule.pattern, cell.who)
        for cell in MATRIX
        for rule in BUILTIN_RULES
        if rule.match(cell.room.replace("{id}", "x")) is not None
    }
    assert covered == {(rule.pattern, who) for rule in BUILTIN_RULES for who in CALLERS}


@pytest.mark.parametrize("cell", MATRIX, ids=[cell.id for cell in MATRIX])
async def test_subscribe(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    unique: Callable[[str], str],
    cell: Cell,
) -> None:
    room = cell.room.replace("{id}", unique("m"))
    stream = Stream(channel, token(server, cell.who), [room], tenant_id=cell.tenant_id)
    if cell.subscribe is ALLOW:
        await stream.ready()
        stream.cancel()
        assert stream.messages == 1
        return
    error = await stream.ended()
    assert stream.messages == 0
    assert_refused(error, cell.subscribe, room)


@pytest.mark.parametrize("cell", MATRIX, ids=[cell.id for cell in MATRIX])
async def test_publish(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
    cell: Cell,
) -> None:
    room = cell.room.replace("{id}", unique("m"))
    request = realtime_pb2.PublishRequest(
        room=room, event="matrix.probe", payload=payload(cell=cell.id), tenant_id=cell.tenant_id
    )
    metadata = bearer(token(server, cell.who))
    if cell.publish is ALLOW:
        response = await realtime.Publish(request, metadata=metadata)
        assert response.offset >= 1
        assert response.epoch
        return
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await realtime.Publish(request, metadata=metadata)
    assert_refused(caught.value, cell.publish, room)


# -- the same name in two tenants -------------------------------------------


async def publish(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    server: ServerProcess,
    who: str,
    room: str,
    event: str,
    tenant_id: str = "",
) -> realtime_pb2.PublishResponse:
    """Publish one event as ``who``."""
    return await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event=event, tenant_id=tenant_id),
        metadata=bearer(token(server, who)),
    )


def seen(events: list[event_pb2.Event]) -> list[tuple[str, str, str, int]]:
    """What arrived, as (tenant, room, event name, offset)."""
    return [(e.tenant_id, e.room, e.event, e.offset) for e in events]


async def test_same_chat_name_in_two_tenants_is_two_rooms(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    admin: admin_pb2_grpc.AdminServiceStub,
    unique: Callable[[str], str],
) -> None:
    room, fence = unique("chat.lobby"), unique("global.fence")
    # The fence is published last and followed by both: whatever leaked comes before it.
    acme = await Stream(channel, token(server, "alice@acme"), [room, fence]).ready()
    globex = await Stream(channel, token(server, "carol@globex"), [room, fence]).ready()
    offsets = [
        (await publish(realtime, server, "globex_service", room, "g1")).offset,
        (await publish(realtime, server, "acme_service", room, "a1")).offset,
        (await publish(realtime, server, "acme_service", room, "a2")).offset,
        (await publish(realtime, server, "globex_service", room, "g2")).offset,
        (await publish(realtime, server, "platform_service", fence, "fence")).offset,
    ]
    acme_events = await acme.wait_for(3)
    globex_events = await globex.wait_for(3)
    acme.cancel()
    globex.cancel()
    assert offsets == [1, 1, 2, 2, 1]
    assert seen(acme_events) == [
        ("acme", room, "a1", 1),
        ("acme", room, "a2", 2),
        ("", fence, "fence", 1),
    ]
    assert seen(globex_events) == [
        ("globex", room, "g1", 1),
        ("globex", room, "g2", 2),
        ("", fence, "fence", 1),
    ]
    platform = bearer(token(server, "platform_service"))
    for tenant, names in (("acme", ["a1", "a2"]), ("globex", ["g1", "g2"])):
        history = await admin.GetHistory(
            admin_pb2.GetHistoryRequest(room=room, tenant_id=tenant), metadata=platform
        )
        assert [(e.tenant_id, e.event) for e in history.events] == [(tenant, n) for n in names]
        assert history.position.offset == 2


async def test_idempotency_keys_do_not_cross_tenants(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.idem")
    results = []
    for who in ("acme_service", "globex_service", "acme_service"):
        results.append(
            await realtime.Publish(
                realtime_pb2.PublishRequest(room=room, event="e", idempotency_key="order-1"),
                metadata=bearer(token(server, who)),
            )
        )
    acme, globex, acme_again = results
    # globex's first use of the key is no duplicate of acme's, and learns nothing of it.
    assert (acme.duplicate, globex.duplicate, acme_again.duplicate) == (False, False, True)
    assert globex.id != acme.id
    assert (acme_again.id, acme_again.offset, acme_again.epoch) == (acme.id, 1, acme.epoch)
    assert globex.offset == 1


# -- patterns never cross tenants --------------------------------------------

# (who publishes, room, tenant_id): events alice must never see.
Foreign = list[tuple[str, str, str]]
# (who publishes, room, tenant): events alice sees, in order, published with
# tenant_id=tenant; the last one is the marker published after every foreign event.
Own = list[tuple[str, str, str]]

PATTERN_CASES: list[tuple[str, Foreign, Own]] = [
    (
        "chat.*",
        [
            ("globex_service", "chat.{id}", ""),
            ("platform_service", "chat.{id}", "globex"),
            ("globex_service", "chat.other{id}", ""),
        ],
        [("acme_service", "chat.{id}", "acme"), ("platform_service", "chat.{id}", "acme")],
    ),
    (
        "user.*.private",
        [
            # alice of globex is another person with a room of the same name.
            ("globex_service", "user.alice.private", ""),
            ("platform_service", "user.alice.private", "globex"),
            ("globex_service", "user.carol.private", ""),
            ("acme_service", "user.bob.private", ""),
            ("platform_service", "user.bob.private", "acme"),
        ],
        [("acme_service", "user.alice.private", "acme")],
    ),
    (
        "tenant.*.users",
        [
            ("globex_service", "tenant.globex.users", ""),
            ("platform_service", "tenant.globex.users", ""),
            ("globex_admin", "tenant.globex.users", ""),
        ],
        [
            ("acme_admin", "tenant.acme.users", "acme"),
            ("acme_service", "tenant.acme.users", "acme"),
        ],
    ),
    (
        "**",
        [
            ("globex_service", "chat.{id}", ""),
            ("globex_service", "user.alice.private", ""),
            ("globex_service", "tenant.globex.notifications", ""),
            ("acme_service", "user.bob.notifications", ""),
            ("acme_service", "tenant.acme.admins", ""),
            ("platform_service", "platform.security", ""),
            ("platform_service", "performance.dashboard", ""),
        ],
        [
            ("acme_service", "chat.{id}", "acme"),
            ("globex_service", "global.{id}", ""),
            ("acme_service", "tenant.acme.notifications", "acme"),
            ("acme_service", "user.alice.private", "acme"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("pattern", "foreign", "own"), PATTERN_CASES, ids=[case[0] for case in PATTERN_CASES]
)
async def test_user_pattern_delivers_only_own_tenant(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
    pattern: str,
    foreign: Foreign,
    own: Own,
) -> None:
    suffix = unique("p")
    stream = await Stream(channel, token(server, "alice@acme"), [pattern]).ready()
    for who, room, tenant_id in foreign:
        await publish(realtime, server, who, room.replace("{id}", suffix), "foreign", tenant_id)
    for who, room, tenant in own:
        await publish(realtime, server, who, room.replace("{id}", suffix), "own", tenant)
    events = await stream.wait_for(len(own))
    stream.cancel()
    assert [(e.tenant_id, e.room, e.event) for e in events] == [
        (tenant, room.replace("{id}", suffix), "own") for _, room, tenant in own
    ]


@pytest.mark.parametrize("pattern", ["chat.*", "tenant.*.users", "**"])
async def test_user_pattern_naming_another_tenant_is_refused(
    server: ServerProcess, channel: grpc.aio.Channel, pattern: str
) -> None:
    stream = Stream(channel, token(server, "alice@acme"), [pattern], tenant_id="globex")
    error = await stream.ended()
    assert stream.messages == 0
    assert_refused(error, FOREIGN, pattern)


@pytest.mark.parametrize(
    ("tenant_id", "expected"),
    [
        ("", [("acme", "x"), ("globex", "x"), ("acme", "y")]),
        ("acme", [("acme", "x"), ("acme", "y")]),
        ("globex", [("globex", "x")]),
    ],
    ids=["every-tenant", "tenant_id=acme", "tenant_id=globex"],
)
async def test_platform_service_pattern_spans_tenants_unless_one_is_named(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
    tenant_id: str,
    expected: list[tuple[str, str]],
) -> None:
    rooms = {"x": unique("chat.x"), "y": unique("chat.y")}
    fence = unique("global.fence")
    stream = await Stream(
        channel, token(server, "platform_service"), ["chat.*", fence], tenant_id=tenant_id
    ).ready()
    await publish(realtime, server, "acme_service", rooms["x"], "e")
    await publish(realtime, server, "globex_service", rooms["x"], "e")
    await publish(realtime, server, "acme_service", rooms["y"], "e")
    await publish(realtime, server, "platform_service", fence, "fence")
    events = await stream.wait_for(len(expected) + 1)
    stream.cancel()
    assert [(e.tenant_id, e.room) for e in events] == [
        *((tenant, rooms[key]) for tenant, key in expected),
        ("", fence),
    ]
    assert [e.sender.tenant_id for e in events] == [tenant for tenant, _ in expected] + [""]
    assert [e.offset for e in events[:-1]] == [1] * len(expected)


# -- AdminService and GetMetrics ---------------------------------------------


@pytest.fixture
async def chat_in_both(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> str:
    """A chat room name with history in acme (one event) and globex (two)."""
    room = unique("chat.admin")
    await publish(realtime, server, "acme_service", room, "acme.only")
    await publish(realtime, server, "globex_service", room, "globex.only")
    await publish(realtime, server, "globex_service", room, "globex.only")
    return room


@pytest.mark.parametrize("tenant_id", ["", "acme"], ids=["tenant_id=none", "tenant_id=acme"])
@pytest.mark.parametrize("who", ["acme_admin", "acme_service"])
async def test_list_rooms_shows_a_tenant_caller_only_its_tenant(
    server: ServerProcess,
    admin: admin_pb2_grpc.AdminServiceStub,
    chat_in_both: str,
    who: str,
    tenant_id: str,
) -> None:
    response = await admin.ListRooms(
        admin_pb2.ListRoomsRequest(prefix="chat.", tenant_id=tenant_id),
        metadata=bearer(token(server, who)),
    )
    listed = [(room.tenant_id, room.name) for room in response.rooms]
    assert ("acme", chat_in_both) in listed
    assert {tenant for tenant, _ in listed} == {"acme"}
    assert all(name.startswith("chat.") for _, name in listed)
    [info] = [room for room in response.rooms if room.name == chat_in_both]
    assert (info.position.offset, info.history_size) == (1, 1)


@pytest.mark.parametrize(
    ("who", "tenant_id", "expected"),
    [
        ("super_admin", "", [("acme", 1), ("globex", 2)]),
        ("platform_service", "", [("acme", 1), ("globex", 2)]),
        ("super_admin", "globex", [("globex", 2)]),
        ("platform_service", "acme", [("acme", 1)]),
    ],
)
async def test_list_rooms_for_platform_callers(
    server: ServerProcess,
    admin: admin_pb2_grpc.AdminServiceStub,
    chat_in_both: str,
    who: str,
    tenant_id: str,
    expected: list[tuple[str, int]],
) -> None:
    response = await admin.ListRooms(
        admin_pb2.ListRoomsRequest(prefix=chat_in_both, tenant_id=tenant_id),
        metadata=bearer(token(server, who)),
    )
    assert [(r.tenant_id, r.name, r.history_size) for r in response.rooms] == [
        (tenant, chat_in_both, size) for tenant, size in expected
    ]


@pytest.mark.parametrize(
    ("who", "tenant_id", "named"),
    [
        ("acme_admin", "globex", "tenant_id:"),
        ("acme_service", "globex", "tenant_id:"),
        ("alice@acme", "", "listing rooms"),
        ("alice@acme", "acme", "listing rooms"),
        ("carol@globex", "", "listing rooms"),
    ],
)
async def test_list_rooms_refusals(
    server: ServerProcess,
    admin: admin_pb2_grpc.AdminServiceStub,
    who: str,
    tenant_id: str,
    named: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.ListRooms(
            admin_pb2.ListRoomsRequest(prefix="chat.", tenant_id=tenant_id),
            metadata=bearer(token(server, who)),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert named in (caught.value.details() or "")


async def test_history_and_presence_of_own_room_for_tenant_admin(
    server: ServerProcess,
    admin: admin_pb2_grpc.AdminServiceStub,
    chat_in_both: str,
) -> None:
    metadata = bearer(token(server, "acme_admin"))
    history = await admin.GetHistory(
        admin_pb2.GetHistoryRequest(room=chat_in_both), metadata=metadata
    )
    presence = await admin.GetPresence(
        admin_pb2.GetPresenceRequest(room=chat_in_both), metadata=metadata
    )
    assert [(e.tenant_id, e.event, e.offset) for e in history.events] == [("acme", "acme.only", 1)]
    assert list(presence.members) == []


@pytest.mark.parametrize("method", ["GetHistory", "GetPresence"])
@pytest.mark.parametrize(
    ("room", "tenant_id", "expected"),
    [
        ("{chat}", "globex", FOREIGN),
        ("tenant.globex.users", "", DENY),
        ("tenant.globex.admins", "", DENY),
        ("user.carol.private", "globex", FOREIGN),
        ("user.alice.private", "", DENY),
    ],
)
async def test_tenant_admin_cannot_read_another_tenants_room(
    server: ServerProcess,
    admin: admin_pb2_grpc.AdminServiceStub,
    chat_in_both: str,
    method: str,
    room: str,
    tenant_id: str,
    expected: Outcome,
) -> None:
    room = room.replace("{chat}", chat_in_both)
    metadata = bearer(token(server, "acme_admin"))
    call = (
        admin.GetHistory(
            admin_pb2.GetHistoryRequest(room=room, tenant_id=tenant_id), metadata=metadata
        )
        if method == "GetHistory"
        else admin.GetPresence(
            admin_pb2.GetPresenceRequest(room=room, tenant_id=tenant_id), metadata=metadata
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert_refused(caught.value, expected, room)


@pytest.mark.parametrize(
    "who", ["acme_service", "acme_admin", "alice@acme", "globex_service", "globex_admin"]
)
async def test_metrics_are_refused_to_tenant_callers(
    server: ServerProcess, realtime: realtime_pb2_grpc.RealtimeServiceStub, who: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await realtime.GetMetrics(
            realtime_pb2.GetMetricsRequest(), metadata=bearer(token(server, who))
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "platform-level" in (caught.value.details() or "")


@pytest.mark.parametrize("who", ["super_admin", "platform_service"])
async def test_metrics_for_platform_callers(
    server: ServerProcess, realtime: realtime_pb2_grpc.RealtimeServiceStub, who: str
) -> None:
    response = await realtime.GetMetrics(
        realtime_pb2.GetMetricsRequest(), metadata=bearer(token(server, who))
    )
    assert response.node_id.startswith("node-")
    assert response.uptime_seconds > 0
    assert response.time.seconds > 0
