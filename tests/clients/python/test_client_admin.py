"""RoomcastClient's operator calls against real servers: alerts, clear_alerts,
disconnect_user, metrics(cluster=...), and the refusals of track_user_activity."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from support.clients import Browser, Connect
from support.cluster import prefixed
from support.redis import start_redis
from support.server import NO_LOAD_ALERTS, ServerProcess, serving, start_server
from support.waiting import eventually

from roomcast_client import (
    Alert,
    Alerts,
    InvalidArgument,
    PermissionDenied,
    RoomcastClient,
)


@pytest.fixture(scope="module")
def alerting() -> Iterator[ServerProcess]:
    """A node that samples five times a second and alerts above one connection per
    tenant; the rules on load are off, so only the tests' alerts fire."""
    with serving(
        env={
            "ROOMCAST_METRICS_INTERVAL": "0.2",
            "ROOMCAST_ALERT_TENANT_CONNECTIONS": "1",
            **NO_LOAD_ALERTS,
        }
    ) as process:
        yield process


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[list[ServerProcess]]:
    """Two nodes of one platform, sharing a `redis-server` of their own."""
    with start_redis() as redis:
        broker = prefixed(redis.url)
        nodes: list[ServerProcess] = []
        try:
            for _ in range(2):
                env = {"ROOMCAST_METRICS_INTERVAL": "0.5"}
                nodes.append(start_server("--broker", broker, env=env))
            yield nodes
        finally:
            codes = [node.stop() for node in nodes]
    assert codes == [0, 0], "\n".join(node.log for node in nodes)


async def test_alerts_fire_resolve_and_clear(
    alerting: ServerProcess, connect: Connect, browser: Browser
) -> None:
    platform = connect(alerting.token("ops", "service"), target=alerting.target)
    acme_admin = connect(
        alerting.token("carol", "tenant_admin", tenant="acme"), target=alerting.target
    )
    globex_admin = connect(
        alerting.token("gus", "tenant_admin", tenant="globex"), target=alerting.target
    )
    crowd = [await browser(f"u{n}", "user", tenant="acme", on=alerting) for n in range(2)]
    began = datetime.now(UTC) - timedelta(seconds=1)

    async def firing() -> bool:
        return bool((await platform.alerts()).firing)

    await eventually(firing)
    alerts = await platform.alerts()
    assert isinstance(alerts, Alerts)
    [alert] = alerts.firing
    assert isinstance(alert, Alert)
    assert (alert.rule, alert.severity, alert.state) == (
        "tenant_connections_high",
        "warning",
        "firing",
    )
    assert (alert.tenant_id, alert.value, alert.threshold) == ("acme", 2.0, 1.0)
    assert alert.resolved_at is None
    assert began <= alert.started_at <= datetime.now(UTC)
    assert alert.message == "tenant acme has 2 connections (over 1)"
    assert alert.node_id
    assert alert.id
    assert alerts.recent == (alert,)

    # A tenant's admin sees its own tenant's alerts; a platform caller may ask for one tenant.
    assert (await acme_admin.alerts()).firing == (alert,)
    assert (await globex_admin.alerts()) == Alerts(firing=(), recent=())
    assert (await platform.alerts(tenant_id="globex")).firing == ()
    assert (await platform.alerts(tenant_id="acme")).firing == (alert,)

    # Nothing to clear while the only alert fires; tenant callers may not clear.
    assert await platform.clear_alerts() == 0
    with pytest.raises(PermissionDenied, match="platform-level"):
        await acme_admin.clear_alerts()

    for client in crowd:
        await client.close()

    async def resolved() -> bool:
        return not (await platform.alerts()).firing

    await eventually(resolved)
    [logged] = (await platform.alerts()).recent
    assert (logged.id, logged.state) == (alert.id, "resolved")
    assert logged.resolved_at is not None
    assert logged.resolved_at >= alert.started_at
    assert await platform.clear_alerts() == 1
    assert await platform.alerts() == Alerts(firing=(), recent=())


async def test_clear_alerts_include_firing_forgets_firing_alerts(
    alerting: ServerProcess, connect: Connect, browser: Browser
) -> None:
    root = connect(alerting.token("root", "super_admin"), target=alerting.target)
    crowd = [await browser(f"v{n}", "user", tenant="initech", on=alerting) for n in range(2)]

    async def firing() -> bool:
        return any(a.tenant_id == "initech" for a in (await root.alerts()).firing)

    await eventually(firing)
    first = (await root.alerts(tenant_id="initech")).firing[0]
    assert await root.clear_alerts(include_firing=True) == 1
    # The condition still holds, so the rule fires again: a new alert.
    await eventually(firing)
    again = (await root.alerts(tenant_id="initech")).firing[0]
    assert again.id != first.id
    for client in crowd:
        await client.close()
    await eventually(lambda: resolved_all(root))
    await root.clear_alerts(include_firing=True)


async def resolved_all(client: RoomcastClient) -> bool:
    return not (await client.alerts()).firing


async def test_reading_alerts_is_for_services_and_admins(
    connect: Connect, server: ServerProcess
) -> None:
    user = connect(server.token("alice", "user", tenant="acme"))
    with pytest.raises(PermissionDenied, match="services and admins"):
        await user.alerts()
    billing = connect(server.token("billing", "service", tenant="acme"))
    with pytest.raises(PermissionDenied, match="act only in it"):
        await billing.alerts(tenant_id="globex")


async def test_metrics_of_the_cluster_cover_every_node(
    connect: Connect, two_nodes: list[ServerProcess]
) -> None:
    a, b = two_nodes
    on_a = connect(a.token("root", "super_admin"), target=a.target)
    on_b = connect(b.token("root", "super_admin"), target=b.target)
    own_a, own_b = (await on_a.metrics()).node_id, (await on_b.metrics()).node_id
    assert own_a != own_b

    async def both() -> bool:
        return sorted((await on_a.metrics(cluster=True)).nodes) == sorted([own_a, own_b])

    # Each node announces itself with its samples; once both have, node A answers for both.
    await eventually(both)
    # Without cluster=True, a node answers for itself only.
    assert list((await on_a.metrics()).nodes) == [own_a]


async def test_metrics_of_the_cluster_on_a_single_node(
    connect: Connect, server: ServerProcess
) -> None:
    root = connect(server.token("root", "super_admin"))
    node = await root.metrics()
    cluster = await root.metrics(cluster=True)
    assert list(node.nodes) == [node.node_id]
    assert list(cluster.nodes) == [cluster.node_id] == [node.node_id]
    tenant_admin = connect(server.token("carol", "tenant_admin", tenant="acme"))
    with pytest.raises(PermissionDenied, match="platform-level"):
        await tenant_admin.metrics(cluster=True)


async def test_disconnect_user_closes_the_users_browsers_with_4001(
    connect: Connect, browser: Browser, service: str, unique: Callable[[str], str]
) -> None:
    tenant = unique("t")
    tabs = [await browser("mallory", "user", tenant=tenant) for _ in range(2)]
    bystander = await browser("bob", "user", tenant=tenant)
    backend = connect(service)
    closed = await backend.disconnect_user("mallory", tenant_id=tenant, reason="account locked")
    assert closed == 2
    for tab in tabs:
        assert await tab.closed() == 4001
        assert tab.close_reason == "account locked"
    marker = await backend.send_user_notification("bob", {"still": "here"}, tenant_id=tenant)
    assert (await bystander.next("event"))["id"] == marker.id
    assert await backend.disconnect_user("mallory", tenant_id=tenant) == 0


async def test_disconnect_user_closes_one_connection(
    connect: Connect, browser: Browser, server: ServerProcess, unique: Callable[[str], str]
) -> None:
    tenant = unique("t")
    first = await browser("mallory", "user", tenant=tenant)
    second = await browser("mallory", "user", tenant=tenant)
    connection_id = first.of_type("connection.confirmed")[0]["connection_id"]
    # A tenant's admin may, in its own tenant, leaving tenant_id out.
    admin = connect(server.token("carol", "tenant_admin", tenant=tenant))
    assert await admin.disconnect_user("mallory", connection_id=connection_id) == 1
    assert await first.closed() == 4001
    assert first.close_reason == "disconnected by the server"
    assert second.close_code is None
    assert await admin.disconnect_user("mallory") == 1
    assert await second.closed() == 4001


async def test_disconnect_user_refusals(
    connect: Connect, server: ServerProcess, service: str
) -> None:
    user = connect(server.token("alice", "user", tenant="acme"))
    with pytest.raises(PermissionDenied, match="services and admins"):
        await user.disconnect_user("bob")
    other = connect(server.token("billing", "service", tenant="acme"))
    with pytest.raises(PermissionDenied, match="act only in it"):
        await other.disconnect_user("bob", tenant_id="globex")
    with pytest.raises(InvalidArgument, match=r"^reason"):
        await connect(service).disconnect_user("bob", tenant_id="acme", reason="x" * 101)
    with pytest.raises(InvalidArgument, match=r"^user_id"):
        await connect(service).disconnect_user("bob.smith", tenant_id="acme")


async def test_track_user_activity_refusals(
    connect: Connect, server: ServerProcess, service: str
) -> None:
    backend = connect(service)
    for arguments, field in (
        ({"action": "x y"}, "action"),
        ({"action": ""}, "action"),
        ({"action": "login", "ip_address": "nope"}, "ip_address"),
        ({"action": "login", "session_id": "s" * 129}, "session_id"),
        ({"action": "login", "user_agent": "u" * 513}, "user_agent"),
    ):
        with pytest.raises(InvalidArgument, match=rf"^{field}"):
            await backend.track_user_activity("alice", "acme", **arguments)
    with pytest.raises(InvalidArgument, match=r"^user_id"):
        await backend.track_user_activity("", "acme", action="login")
    with pytest.raises(InvalidArgument, match=r"^tenant_id: required"):
        await backend.track_user_activity("alice", action="login")
    with pytest.raises(PermissionDenied, match="for services"):
        await connect(server.token("carol", "tenant_admin", tenant="acme")).track_user_activity(
            "alice", "acme", action="login"
        )
    with pytest.raises(PermissionDenied, match="act only in it"):
        await connect(server.token("app", "service", tenant="acme")).track_user_activity(
            "gus", "globex", action="login"
        )
    # Details that are not JSON are refused before anything is sent.
    with pytest.raises(TypeError, match="JSON"):
        await backend.track_user_activity(
            "alice",
            "acme",
            action="login",
            details={"when": datetime.now(UTC)},  # type: ignore[dict-item]
        )
