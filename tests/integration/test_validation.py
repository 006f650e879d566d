"""Bad input over gRPC: the status names the field, and the server carries on.

Every refusal here is INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for a limit)
with details that start with the field at fault. The last test checks that
after all of it the shared server still serves a normal round trip and never
logged a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess, serving

from roomcast.v1 import admin_pb2, admin_pb2_grpc, event_pb2, realtime_pb2, realtime_pb2_grpc

PAYLOAD_LIMIT = 64 * 1024


def assert_status(error: grpc.aio.AioRpcError, code: grpc.StatusCode, field: str) -> str:
    """The call ended with ``code``, naming ``field`` first; its details."""
    details = error.details() or ""
    assert error.code() == code, details
    assert details.startswith(f"{field}:"), details
    assert "Traceback" not in details
    return details


@pytest.fixture
def service(server: ServerProcess) -> tuple[tuple[str, str], ...]:
    """Metadata of a platform service, allowed to publish to global rooms."""
    return bearer(server.token("backend", "service"))


async def publish_refused(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    metadata: tuple[tuple[str, str], ...],
    request: realtime_pb2.PublishRequest,
) -> grpc.aio.AioRpcError:
    """Publish ``request``, which must fail; the error."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await realtime.Publish(request, metadata=metadata)
    return caught.value


async def subscribe_refused(
    channel: grpc.aio.Channel,
    token: str,
    rooms: list[str],
    *,
    since: dict[str, tuple[int, str]] | None = None,
    tenant_id: str = "",
) -> grpc.aio.AioRpcError:
    """Subscribe, which must fail before the ``subscribed`` marker; the error."""
    stream = Stream(channel, token, rooms, since=since, tenant_id=tenant_id)
    error = await stream.ended()
    assert error is not None
    assert stream.messages == 0
    return error


# -- room names --------------------------------------------------------------

BAD_NAMES = {
    "empty": "",
    "double-dot": "a..b",
    "leading-dot": ".a",
    "trailing-dot": "a.",
    "space": "a b",
    "slash": "chat.x/y",
    "201-characters": "global." + "x" * 194,
    "accented": "chat.café",
    "emoji": "global.\N{PARTY POPPER}",
    "colon": "acme:chat.x",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
async def test_bad_room_name_in_publish(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    service: tuple[tuple[str, str], ...],
    name: str,
) -> None:
    error = await publish_refused(
        realtime, service, realtime_pb2.PublishRequest(room=name, event="e")
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "room")


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
async def test_bad_room_name_in_subscribe(
    server: ServerProcess, channel: grpc.aio.Channel, unique: Callable[[str], str], name: str
) -> None:
    token = server.token("backend", "service")
    error = await subscribe_refused(channel, token, [unique("global.ok"), name])
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "rooms[1]")


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
async def test_bad_room_name_in_history(
    server: ServerProcess, admin: admin_pb2_grpc.AdminServiceStub, name: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.GetHistory(
            admin_pb2.GetHistoryRequest(room=name),
            metadata=bearer(server.token("backend", "service")),
        )
    assert_status(caught.value, grpc.StatusCode.INVALID_ARGUMENT, "room")


async def test_room_name_of_200_characters_is_accepted(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
) -> None:
    name = unique("global.long")
    name += "x" * (200 - len(name))
    response = await realtime.Publish(
        realtime_pb2.PublishRequest(room=name, event="e"), metadata=service
    )
    assert response.offset == 1


@pytest.mark.parametrize("name", ["foo.bar", "chat", "chat.a.b", "tenant.acme", "platform.other"])
async def test_unknown_kind_of_room(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    service: tuple[tuple[str, str], ...],
    name: str,
) -> None:
    published = await publish_refused(
        realtime, service, realtime_pb2.PublishRequest(room=name, event="e", tenant_id="acme")
    )
    subscribed = await subscribe_refused(
        channel, server.token("backend", "service"), [name], tenant_id="acme"
    )
    for error in (published, subscribed):
        details = error.details() or ""
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"{name!r} is not a known kind of room" in details


# -- patterns ----------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern", ["chat.**.x", "chat.a*", "**.x", "chat.*x", "chat.***", "*.**.*", "chat.*."]
)
async def test_bad_pattern(server: ServerProcess, channel: grpc.aio.Channel, pattern: str) -> None:
    error = await subscribe_refused(
        channel, server.token("backend", "service"), ["chat.*", pattern]
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "rooms[1]")


@pytest.mark.parametrize("pattern", ["**", "*", "chat.*", "tenant.acme.**", "user.*.private"])
async def test_good_pattern(server: ServerProcess, channel: grpc.aio.Channel, pattern: str) -> None:
    stream = await Stream(channel, server.token("backend", "service"), [pattern]).ready()
    stream.cancel()
    assert stream.messages == 1


# -- events, payloads, keys, tenants ----------------------------------------

BAD_EVENTS = {
    "empty": "",
    "space": "bad event",
    "101-characters": "e" * 101,
    "double-dot": "user..created",
    "accented": "créé",
}


@pytest.mark.parametrize("event", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
async def test_bad_event_name(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
    event: str,
) -> None:
    request = realtime_pb2.PublishRequest(room=unique("global.ev"), event=event)
    error = await publish_refused(realtime, service, request)
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "event")


async def test_event_name_of_100_characters_is_accepted(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
) -> None:
    request = realtime_pb2.PublishRequest(room=unique("global.ev"), event="e" * 100)
    assert (await realtime.Publish(request, metadata=service)).offset == 1


def payload_of(size: int) -> Struct:
    """A payload whose encoding is exactly ``size`` bytes."""
    struct = Struct()
    struct["d"] = "x" * (size - 16)
    struct["d"] = "x" * (size - 16 + size - struct.ByteSize())
    assert struct.ByteSize() == size
    return struct


@pytest.mark.parametrize(
    ("size", "accepted"),
    [(PAYLOAD_LIMIT, True), (PAYLOAD_LIMIT + 1, False), (4 * PAYLOAD_LIMIT, False)],
    ids=["64KiB", "64KiB+1", "256KiB"],
)
async def test_payload_limit(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
    size: int,
    accepted: bool,
) -> None:
    request = realtime_pb2.PublishRequest(
        room=unique("global.big"), event="e", payload=payload_of(size)
    )
    if accepted:
        assert (await realtime.Publish(request, metadata=service)).offset == 1
        return
    error = await publish_refused(realtime, service, request)
    details = assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "payload")
    assert f"{size} bytes" in details


@pytest.mark.parametrize(("length", "accepted"), [(128, True), (129, False), (1000, False)])
async def test_idempotency_key_limit(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
    length: int,
    accepted: bool,
) -> None:
    request = realtime_pb2.PublishRequest(
        room=unique("global.idem"), event="e", idempotency_key="k" * length
    )
    if accepted:
        assert (await realtime.Publish(request, metadata=service)).offset == 1
        return
    error = await publish_refused(realtime, service, request)
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key")


BAD_TENANTS = {
    "space": "acme corp",
    "dot": "acme.eu",
    "colon": "acme:eu",
    "65-characters": "t" * 65,
    "accented": "acmé",
}


@pytest.mark.parametrize("tenant_id", BAD_TENANTS.values(), ids=BAD_TENANTS.keys())
async def test_malformed_tenant_id(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    admin: admin_pb2_grpc.AdminServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
    tenant_id: str,
) -> None:
    room = unique("chat.t")
    token = server.token("backend", "service")
    errors = [
        await publish_refused(
            realtime,
            service,
            realtime_pb2.PublishRequest(room=room, event="e", tenant_id=tenant_id),
        ),
        await subscribe_refused(channel, token, [room], tenant_id=tenant_id),
        await subscribe_refused(channel, token, ["chat.*"], tenant_id=tenant_id),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.ListRooms(admin_pb2.ListRoomsRequest(tenant_id=tenant_id), metadata=service)
    errors.append(caught.value)
    for error in errors:
        assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "tenant_id")


# -- Subscribe limits --------------------------------------------------------


async def test_subscribe_without_rooms(server: ServerProcess, channel: grpc.aio.Channel) -> None:
    error = await subscribe_refused(channel, server.token("backend", "service"), [])
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "rooms")


@pytest.mark.parametrize(("count", "accepted"), [(128, True), (129, False)])
async def test_subscribe_room_limit(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    unique: Callable[[str], str],
    count: int,
    accepted: bool,
) -> None:
    rooms = [unique(f"global.many{n}x") for n in range(count)]
    token = server.token("backend", "service")
    if accepted:
        stream = await Stream(channel, token, rooms).ready()
        stream.cancel()
        assert stream.messages == 1
        return
    error = await subscribe_refused(channel, token, rooms)
    details = assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "rooms")
    assert "129" in details


@pytest.mark.parametrize(
    ("rooms", "since"),
    [
        (["global.{id}a"], "global.{id}b"),
        (["chat.*"], "global.{id}a"),
        (["tenant.*.users"], "tenant.acme.notifications"),
    ],
    ids=["other-room", "pattern-of-another-kind", "pattern-not-matching"],
)
async def test_since_for_a_room_not_subscribed(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    unique: Callable[[str], str],
    rooms: list[str],
    since: str,
) -> None:
    suffix = unique("s")
    rooms = [room.replace("{id}", suffix) for room in rooms]
    since = since.replace("{id}", suffix)
    error = await subscribe_refused(
        channel, server.token("backend", "service"), rooms, since={since: (0, "")}
    )
    details = assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "since")
    assert repr(since) in details


# -- PublishBatch ------------------------------------------------------------


@pytest.mark.parametrize(("count", "accepted"), [(10_000, True), (10_001, False)])
async def test_publish_batch_limit(
    channel: grpc.aio.Channel,
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
    count: int,
    accepted: bool,
) -> None:
    room = unique("global.batch")
    item = realtime_pb2.PublishRequest(room=room, event="e")
    batch = realtime_pb2.PublishBatchRequest(events=[item] * count)
    if accepted:
        response = await realtime.PublishBatch(batch, metadata=service)
        assert len(response.results) == count
        assert [r.published.offset for r in response.results[-2:]] == [count - 1, count]
        return
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await realtime.PublishBatch(batch, metadata=service)
    details = assert_status(caught.value, grpc.StatusCode.RESOURCE_EXHAUSTED, "events")
    assert "10001" in details
    # Nothing of the refused batch was published: the room's first event is offset 1.
    after = await realtime.Publish(item, metadata=service)
    assert after.offset == 1


# -- JoinRoom and LeaveRoom --------------------------------------------------


async def membership(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    method: str,
    token: str,
    **fields: str,
) -> int:
    """Call JoinRoom or LeaveRoom; the number of connections it moved."""
    if method == "JoinRoom":
        join = await realtime.JoinRoom(
            realtime_pb2.JoinRoomRequest(**fields), metadata=bearer(token)
        )
        return join.connections
    leave = await realtime.LeaveRoom(
        realtime_pb2.LeaveRoomRequest(**fields), metadata=bearer(token)
    )
    return leave.connections


@pytest.mark.parametrize("method", ["JoinRoom", "LeaveRoom"])
@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "user_id or connection_id"),
        ({"user_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "user_id or connection_id"),
        ({"user_id": "bad user"}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        ({"user_id": "u" * 65}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        ({"connection_id": "no-such-connection"}, grpc.StatusCode.NOT_FOUND, "connection_id"),
    ],
    ids=["no-target", "empty-user", "bad-user", "long-user", "unknown-connection"],
)
async def test_membership_bad_target(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
    method: str,
    fields: dict[str, str],
    code: grpc.StatusCode,
    field: str,
) -> None:
    token = server.token("billing", "service", tenant="acme")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await membership(realtime, method, token, room=unique("chat.j"), **fields)
    assert_status(caught.value, code, field)


@pytest.mark.parametrize("method", ["JoinRoom", "LeaveRoom"])
@pytest.mark.parametrize(
    ("who", "tenant_id"),
    [(("billing", "service", "acme"), ""), (("backend", "service", None), "acme")],
    ids=["acme-service", "platform-service"],
)
async def test_membership_of_user_without_connections(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    admin: admin_pb2_grpc.AdminServiceStub,
    unique: Callable[[str], str],
    method: str,
    who: tuple[str, str, str | None],
    tenant_id: str,
) -> None:
    sub, role, tenant = who
    token = server.token(sub, role, tenant=tenant)
    room = unique("chat.j")
    moved = await membership(realtime, method, token, room=room, tenant_id=tenant_id, user_id="u1")
    presence = await admin.GetPresence(
        admin_pb2.GetPresenceRequest(room=room, tenant_id=tenant_id), metadata=bearer(token)
    )
    assert moved == 0
    assert list(presence.members) == []


@pytest.mark.parametrize("method", ["JoinRoom", "LeaveRoom"])
@pytest.mark.parametrize(
    ("who", "room", "tenant_id", "names"),
    [
        (("alice", "user", "acme"), "chat.{id}", "", "services"),
        (("boss", "tenant_admin", "acme"), "chat.{id}", "", "services"),
        (("root", "super_admin", None), "chat.{id}", "acme", "services"),
        (("billing", "service", "acme"), "chat.{id}", "globex", "tenant_id"),
        (("billing", "service", "acme"), "tenant.globex.users", "", "tenant.globex.users"),
        (("billing", "service", "acme"), "platform.admins", "", "platform.admins"),
    ],
    ids=["user", "tenant-admin", "super-admin", "other-tenant", "other-tenant-room", "platform"],
)
async def test_membership_refused(
    server: ServerProcess,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
    method: str,
    who: tuple[str, str, str | None],
    room: str,
    tenant_id: str,
    names: str,
) -> None:
    sub, role, tenant = who
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await membership(
            realtime,
            method,
            server.token(sub, role, tenant=tenant),
            room=room.replace("{id}", unique("j")),
            tenant_id=tenant_id,
            user_id="u1",
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert names in (caught.value.details() or "")


# -- GetHistory limits -------------------------------------------------------


async def history(
    admin: admin_pb2_grpc.AdminServiceStub,
    metadata: tuple[tuple[str, str], ...],
    room: str,
    limit: int,
    since: tuple[int, str] | None = None,
) -> tuple[list[int], bool]:
    """The offsets GetHistory returns, and whether ``since`` was served."""
    request = admin_pb2.GetHistoryRequest(room=room, limit=limit)
    if since is not None:
        request.since.CopyFrom(event_pb2.StreamPosition(offset=since[0], epoch=since[1]))
    response = await admin.GetHistory(request, metadata=metadata)
    return [event.offset for event in response.events], response.recovered


async def publish_many(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    metadata: tuple[tuple[str, str], ...],
    room: str,
    count: int,
) -> str:
    """Publish ``count`` events to ``room``; the room's epoch."""
    batch = realtime_pb2.PublishBatchRequest(
        events=[realtime_pb2.PublishRequest(room=room, event="e") for _ in range(count)]
    )
    results = (await realtime.PublishBatch(batch, metadata=metadata)).results
    assert results[-1].published.offset == count
    return results[0].published.epoch


async def test_history_limit_takes_the_oldest_after_since(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    admin: admin_pb2_grpc.AdminServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
) -> None:
    room = unique("global.hist")
    epoch = await publish_many(realtime, service, room, 10)
    assert await history(admin, service, room, 3, (4, epoch)) == ([5, 6, 7], True)
    assert await history(admin, service, room, 3, (8, epoch)) == ([9, 10], True)
    assert await history(admin, service, room, 3, (10, epoch)) == ([], True)
    assert await history(admin, service, room, 3) == ([1, 2, 3], True)
    assert await history(admin, service, room, 0) == (list(range(1, 11)), True)
    assert await history(admin, service, room, 0, (0, "")) == (list(range(1, 11)), True)


async def test_history_limit_zero_returns_everything_held(
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    admin: admin_pb2_grpc.AdminServiceStub,
    service: tuple[tuple[str, str], ...],
    unique: Callable[[str], str],
) -> None:
    room = unique("global.hist")
    epoch = await publish_many(realtime, service, room, 150)
    # A global room keeps its newest 100 events.
    assert await history(admin, service, room, 0) == (list(range(51, 151)), True)
    assert await history(admin, service, room, 0, (120, epoch)) == (list(range(121, 151)), True)
    # A position the history no longer reaches: from the oldest held, not recovered.
    assert await history(admin, service, room, 3, (4, epoch)) == ([51, 52, 53], False)


@pytest.fixture(scope="module")
def archive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose archive.{id} rooms keep 2,000 events (more than a page)."""
    policy: Path = tmp_path_factory.mktemp("policy") / "policy.toml"
    policy.write_text(
        "[[rooms]]\n"
        'pattern = "archive.{id}"\n'
        'scope = "global"\n'
        'subscribe = ["authenticated"]\n'
        'publish = ["any_service"]\n'
        "history_size = 2000\n"
    )
    with serving("--policy", str(policy)) as process:
        yield process


async def test_history_page_is_at_most_1000(archive_server: ServerProcess) -> None:
    metadata = bearer(archive_server.token("backend", "service"))
    async with archive_server.channel() as channel:
        realtime = realtime_pb2_grpc.RealtimeServiceStub(channel)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        epoch = await publish_many(realtime, metadata, "archive.a", 1500)
        first_page = (list(range(1, 1001)), True)
        assert await history(admin, metadata, "archive.a", 0) == first_page
        assert await history(admin, metadata, "archive.a", 5000) == first_page
        assert await history(admin, metadata, "archive.a", 1000, (1000, epoch)) == (
            list(range(1001, 1501)),
            True,
        )
        assert await history(admin, metadata, "archive.a", 2, (1200, epoch)) == ([1201, 1202], True)


# -- and the server is still fine --------------------------------------------


async def test_server_still_serves_after_bad_input(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.after")
    alice = server.token("alice", "user", tenant="acme")
    stream = await Stream(channel, alice, [room]).ready()
    response = await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="still.here", payload=payload(ok=True)),
        metadata=bearer(server.token("billing", "service", tenant="acme")),
    )
    [event] = await stream.wait_for(1)
    stream.cancel()
    assert (response.offset, event.offset, event.event) == (1, 1, "still.here")
    assert event.payload["ok"] is True
    assert server.process.poll() is None
    assert "Traceback" not in server.log
    assert "unexpected error" not in server.log
