"""RoomcastClient's unary calls against a real server: publish, batches, rooms, metrics."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.clients import Connect, Take
from support.server import ServerProcess

from roomcast_client import (
    Event,
    InvalidArgument,
    PermissionDenied,
    Published,
    PublishItem,
    Sender,
)
from roomcast_client.v1 import GetMetricsResponse

PAYLOAD = {
    "text": "héllo",
    "count": 3,
    "ratio": 0.25,
    "ok": True,
    "nothing": None,
    "tags": ["a", 1, False, None, {"deep": ["x"]}],
    "nested": {"level": {"list": [], "map": {}}},
}


async def test_publish_reaches_a_subscriber_with_payload_and_sender(
    connect: Connect, service: str, unique: Callable[[str], str], take: Take
) -> None:
    room = unique("global.calls")
    client = connect(service)
    async with client.subscribe(room) as events:
        first = await client.publish(room, "greeting", PAYLOAD)
        second = await client.publish(room, "greeting", {"n": 2})
        [event, other] = await take(events, 2)
    assert isinstance(first, Published)
    assert (first.offset, second.offset) == (1, 2)
    assert first.epoch == second.epoch != ""
    assert not first.duplicate
    assert isinstance(event, Event)
    assert isinstance(other, Event)
    assert event.id == first.id
    assert event.room == room
    assert event.event == "greeting"
    assert event.position == first.position
    assert event.tenant_id == ""
    assert event.sender == Sender(user_id="backend", service="backend")
    # Struct carries every number as a double; everything else comes back as sent.
    assert event.payload == {
        **PAYLOAD,
        "count": 3.0,
        "tags": ["a", 1.0, False, None, {"deep": ["x"]}],
    }
    assert other.payload == {"n": 2.0}
    assert event.time.tzinfo is not None
    assert event.time <= other.time


async def test_idempotency_key_publishes_once(
    connect: Connect, service: str, unique: Callable[[str], str]
) -> None:
    room, key = unique("global.idem"), unique("key-")
    client = connect(service)
    first = await client.publish(room, "e", {"try": 1}, idempotency_key=key)
    again = await client.publish(room, "e", {"try": 2}, idempotency_key=key)
    other = await client.publish(room, "e", {"try": 3})
    assert again == Published(first.offset, first.epoch, first.id, duplicate=True)
    assert other.offset == first.offset + 1


async def test_skip_history_events_are_live_only(
    connect: Connect, service: str, unique: Callable[[str], str], take: Take
) -> None:
    room = unique("global.live")
    client = connect(service)
    async with client.subscribe(room) as events:
        published = await client.publish(room, "tick", skip_history=True)
        [event] = await take(events, 1)
    assert published.offset == 0
    assert isinstance(event, Event)
    assert event.offset == 0
    assert event.event == "tick"


async def test_tenant_rooms_need_the_tenant_from_a_platform_service(
    connect: Connect, service: str, unique: Callable[[str], str]
) -> None:
    room = unique("chat.t")
    client = connect(service)
    with pytest.raises(InvalidArgument, match="tenant_id: required"):
        await client.publish(room, "message.posted", {"text": "hi"})
    published = await client.publish(room, "message.posted", {"text": "hi"}, tenant_id="acme")
    assert published.offset == 1


async def test_publish_batch_returns_one_result_per_item_in_order(
    connect: Connect, service: str, unique: Callable[[str], str]
) -> None:
    room = unique("global.batch")
    client = connect(service)
    results = await client.publish_batch(
        [
            PublishItem(room, "one", {"i": 1}),
            PublishItem(unique("chat.b"), "two"),  # no tenant_id: refused on its own
            PublishItem(room, "three", {"i": 3}, idempotency_key="k"),
            PublishItem(room, "three", {"i": 3}, idempotency_key="k"),
            PublishItem("tenant.acme.notifications", "bad event name"),
        ]
    )
    assert len(results) == 5
    one, two, three, repeat, bad = results
    assert isinstance(one, Published)
    assert one.offset == 1
    assert isinstance(two, InvalidArgument)
    assert "tenant_id" in two.message
    assert isinstance(three, Published)
    assert three.offset == 2
    assert repeat == Published(three.offset, three.epoch, three.id, duplicate=True)
    assert isinstance(bad, InvalidArgument)
    assert bad.code == "INVALID_ARGUMENT"


async def test_publish_batch_reports_policy_refusals_per_item(
    connect: Connect, server: ServerProcess, unique: Callable[[str], str]
) -> None:
    tenant_service = connect(server.token("billing", "service", tenant="acme"))
    results = await tenant_service.publish_batch(
        [
            PublishItem("tenant.acme.users", "ok"),
            PublishItem("platform.admins", "not-for-tenants"),
            PublishItem("tenant.globex.users", "other-tenant"),
        ]
    )
    assert isinstance(results[0], Published)
    assert isinstance(results[1], PermissionDenied)
    assert "platform.admins" in results[1].message
    assert isinstance(results[2], PermissionDenied)
    assert "another tenant" in results[2].message


async def test_join_and_leave_room_count_connections(connect: Connect, service: str) -> None:
    client = connect(service)
    # No WebSocket connections exist yet (issue #3), so a user has none to move.
    assert await client.join_room("chat.general", user_id="alice", tenant_id="acme") == 0
    assert await client.leave_room("chat.general", user_id="alice", tenant_id="acme") == 0


async def test_join_room_needs_exactly_one_target(connect: Connect, service: str) -> None:
    client = connect(service)
    with pytest.raises(ValueError, match="exactly one"):
        await client.join_room("chat.general", tenant_id="acme")
    with pytest.raises(ValueError, match="exactly one"):
        await client.leave_room("chat.general", user_id="a", connection_id="c", tenant_id="acme")


async def test_metrics_snapshot(connect: Connect, server: ServerProcess) -> None:
    metrics = await connect(server.token("root", "super_admin")).metrics()
    assert isinstance(metrics, GetMetricsResponse)
    assert metrics.node_id
    assert metrics.uptime_seconds > 0
    assert metrics.system.process_rss_bytes > 0


async def test_a_token_function_is_asked_before_every_call(
    connect: Connect, server: ServerProcess, unique: Callable[[str], str]
) -> None:
    handed_out: list[str] = []

    def fresh_token() -> str:
        handed_out.append(server.token("rotating", "service"))
        return handed_out[-1]

    client = connect(fresh_token)
    room = unique("global.rotate")
    await client.publish(room, "e")
    await client.publish(room, "e")
    assert len(handed_out) == 2
