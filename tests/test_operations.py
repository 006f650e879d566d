"""The operators' verbs, and in which tenant each caller may use them (src/roomcast/operations.py).

A real node on the memory broker (:mod:`support.local_node`); its rooms,
connections and alerts are made the way traffic makes them.
"""

from __future__ import annotations

import pytest
from support.inputs import item
from support.local_node import FakeConnection, local_node
from support.tokens import principal, user

from roomcast import operations
from roomcast.auth import Principal
from roomcast.errors import Forbidden, InvalidArgument, Overloaded
from roomcast.history import Position
from roomcast.node import Node
from roomcast.operations import DISCONNECT, RoomSummary
from roomcast.presence import ConnectionId
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1.event_pb2 import Event

ACME_SERVICE = principal("backend", "service")
GLOBEX_SERVICE = principal("backend", "service", tenant="globex")
ACME_ADMIN = principal("ann", "tenant_admin")
PLATFORM = principal("ops", "service", tenant=None)
ROOT = principal("root", "super_admin", tenant=None)


async def busy_node(**settings: object) -> Node:
    """A node with events in rooms of acme, of globex and of no tenant."""
    node = await local_node(**settings)
    await node.publish(ACME_SERVICE, item("chat.b"))
    await node.publish(ACME_SERVICE, item("chat.a"))
    await node.publish(ACME_SERVICE, item("document.d1.collaboration"))
    await node.publish(GLOBEX_SERVICE, item("chat.a"))
    await node.publish(PLATFORM, item("global.lobby"))
    return node


async def listed(node: Node, who: Principal, prefix: str = "", tenant_id: str = "") -> list[str]:
    rooms, _ = await node.operations.list_rooms(who, prefix, tenant_id)
    return [summary.room.key for summary in rooms]


async def connected(node: Node, who: Principal, name: str) -> FakeConnection:
    connection = FakeConnection(ConnectionId(name))
    await node.sessions.connect(connection, who)
    return connection


# -- ListRooms -------------------------------------------------------------------------


async def test_list_rooms_shows_each_caller_the_rooms_of_its_scope() -> None:
    node = await busy_node()
    acme = ["acme:chat.a", "acme:chat.b", "acme:document.d1.collaboration"]
    assert await listed(node, ACME_SERVICE) == acme
    assert await listed(node, ACME_ADMIN) == acme
    assert await listed(node, PLATFORM, tenant_id="globex") == ["globex:chat.a"]
    # Every tenant's rooms, by tenant then name; rooms of no tenant first.
    assert await listed(node, ROOT) == ["global.lobby", *acme, "globex:chat.a"]


@pytest.mark.parametrize(
    ("who", "tenant_id"),
    [(user("alice"), ""), (ACME_SERVICE, "globex"), (ACME_ADMIN, "globex")],
)
async def test_list_rooms_is_refused_outside_the_callers_scope(
    who: Principal, tenant_id: str
) -> None:
    node = await busy_node()
    with pytest.raises(Forbidden):
        await node.operations.list_rooms(who, "", tenant_id)


async def test_list_rooms_filters_by_prefix_and_hides_the_nodes_own_room() -> None:
    node = await busy_node()
    await node.command(DISCONNECT, {"user_id": "nobody", "tenant_id": "", "reason": ""})
    assert "roomcast.control" in {stats.room.key for stats in await node.broker.rooms()}
    assert "roomcast.control" not in await listed(node, PLATFORM)
    assert await listed(node, ACME_SERVICE, prefix="chat.") == ["acme:chat.a", "acme:chat.b"]


async def test_list_rooms_counts_members_subscribers_and_history() -> None:
    node = await busy_node()
    alice = await connected(node, user("alice"), "a")
    await node.sessions.join(alice.id, "chat.a", None, 1 << 18)
    stream = FakeConnection(ConnectionId("s"))
    await node.subscribe(ACME_SERVICE, stream, ["chat.*"], {})
    await node.publish(ACME_SERVICE, item("chat.a"))
    # A room known only by its member (no history, no subscriber of its own).
    await node.sessions.join(alice.id, "chat.quiet", None, 1 << 18)
    rooms, truncated = await node.operations.list_rooms(ACME_SERVICE, "chat.", "")
    by_name = {summary.room.name: summary for summary in rooms}
    epoch = (await node.history(ACME_SERVICE, "chat.a", "", None, 1, 1 << 20)).top.epoch
    chat_a = Room.of(RoomName("chat.a"), TenantId("acme"))
    assert by_name["chat.a"] == RoomSummary(chat_a, 1, 2, Position(2, epoch), 2)
    assert (by_name["chat.quiet"].members, by_name["chat.quiet"].history_size) == (1, 0)
    assert by_name["chat.b"].members == 0
    assert not truncated


async def test_list_rooms_says_when_the_list_was_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operations, "MAX_LISTED_ROOMS", 2)
    node = await busy_node()
    rooms, truncated = await node.operations.list_rooms(PLATFORM, "", "")
    assert len(rooms) == 2
    assert truncated


async def test_list_rooms_is_refused_over_the_memory_budget() -> None:
    node = await busy_node()
    node.guard.observe(node.guard.limit + 1)
    with pytest.raises(Overloaded, match="listing rooms"):
        await node.operations.list_rooms(PLATFORM, "", "")


# -- DisconnectUser --------------------------------------------------------------------


async def test_disconnect_user_closes_the_users_connections_in_the_callers_tenant() -> None:
    node = await local_node()
    ours = [await connected(node, user("alice"), f"a{n}") for n in range(2)]
    theirs = await connected(node, user("alice", "globex"), "g")
    closed = await node.operations.disconnect_user(ACME_SERVICE, "alice", "", "", "locked")
    assert closed == 2
    assert [c.closed for c in ours] == [(4001, "locked")] * 2
    assert theirs.closed is None
    assert await node.operations.disconnect_user(PLATFORM, "alice", "globex", "", "") == 1
    assert theirs.closed == (4001, "disconnected by the server")
    # One node: no command for other nodes goes out.
    assert "roomcast.control" not in {stats.room.key for stats in await node.broker.rooms()}


async def test_disconnect_user_is_refused_to_users_and_to_other_tenants() -> None:
    node = await local_node()
    alice = await connected(node, user("alice", "globex"), "g")
    with pytest.raises(Forbidden):
        await node.operations.disconnect_user(user("bob", "globex"), "alice", "", "", "")
    with pytest.raises(Forbidden):
        await node.operations.disconnect_user(ACME_ADMIN, "alice", "globex", "", "")
    with pytest.raises(InvalidArgument, match="reason"):
        await node.operations.disconnect_user(PLATFORM, "alice", "globex", "", "x" * 101)
    assert alice.closed is None


# -- TrackActivity -----------------------------------------------------------------------


async def test_track_activity_tells_the_tenants_admins() -> None:
    node = await local_node()
    admins = FakeConnection(ConnectionId("admins"))
    node.hub.add(Room.of(RoomName("tenant.acme.admins"), TenantId("acme")), admins)
    result = await node.operations.track_activity(
        ACME_SERVICE, "", user_id="alice", action="login", ip_address="10.0.0.1"
    )
    (publication,) = admins.delivered
    event = Event.FromString(publication.data)
    assert (event.event, event.id, event.offset) == ("user.activity", result.id, result.offset)
    assert dict(event.payload) == {
        "user_id": "alice",
        "tenant_id": "acme",
        "action": "login",
        "ip_address": "10.0.0.1",
    }
    assert node.metrics.counters.activities == 1
    await node.operations.track_activity(PLATFORM, "acme", user_id="bob", action="logout")
    assert len(admins.delivered) == 2


@pytest.mark.parametrize(
    ("who", "tenant_id", "error"),
    [
        (ACME_ADMIN, "", Forbidden),  # services only
        (ACME_SERVICE, "globex", Forbidden),
        (PLATFORM, "", InvalidArgument),  # a platform service names the tenant
    ],
)
async def test_track_activity_is_refused_outside_a_services_tenant(
    who: Principal, tenant_id: str, error: type[Exception]
) -> None:
    node = await local_node()
    with pytest.raises(error):
        await node.operations.track_activity(who, tenant_id, user_id="alice", action="login")
    assert node.metrics.counters.activities == 0


# -- alerts and metrics --------------------------------------------------------------------


async def alerting_node() -> Node:
    """A node whose two tenants both have more connections than their alert allows."""
    node = await local_node(
        alert_tenant_connections=1,
        alert_cpu_percent=0,
        alert_memory_percent=0,
        alert_latency_p99_ms=0,
        alert_error_rate=0,
    )
    for tenant in ("acme", "globex"):
        for name in ("u1", "u2"):
            await connected(node, user(name, tenant), f"{tenant}-{name}")
    await node.monitor.tick()
    return node


async def test_alerts_are_shown_to_each_caller_for_its_scope() -> None:
    node = await alerting_node()
    firing, recent = node.operations.alerts(ACME_ADMIN, "")
    assert [a.tenant_id for a in firing] == ["acme"]
    assert [a.tenant_id for a in recent] == ["acme"]
    firing, _ = node.operations.alerts(PLATFORM, "")
    assert sorted(a.tenant_id for a in firing) == ["acme", "globex"]
    firing, _ = node.operations.alerts(ROOT, "globex")
    assert [a.tenant_id for a in firing] == ["globex"]
    with pytest.raises(Forbidden):
        node.operations.alerts(user("u1"), "")


async def test_alert_logs_are_cleared_by_platform_callers_only() -> None:
    node = await alerting_node()
    with pytest.raises(Forbidden):
        node.operations.clear_alerts(ACME_ADMIN, include_firing=True)
    assert node.operations.clear_alerts(PLATFORM, include_firing=False) == 0  # still firing
    assert node.operations.clear_alerts(PLATFORM, include_firing=True) == 2
    assert node.operations.alerts(PLATFORM, "") == ([], [])


async def test_metrics_are_for_platform_callers_and_name_the_node() -> None:
    node = await local_node()
    with pytest.raises(Forbidden):
        await node.operations.metrics_payload(ACME_SERVICE, cluster=False)
    for cluster in (False, True):  # one node answers for itself either way
        payload = await node.operations.metrics_payload(PLATFORM, cluster=cluster)
        assert payload["node_id"] == node.settings.node_id
        assert payload["nodes"] == [node.settings.node_id]
