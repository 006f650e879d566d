"""The helper verbs deliver to real browsers' rooms.

Each test sends with ``RoomcastClient``'s helper verbs over gRPC and receives
with real WebSocket clients of the bridge (``support.ws.WsClient``), connected
with the tokens browsers would have: the rooms a connection is put in when it
connects, or joins itself, are the rooms the helpers publish to. Where a
browser must *not* receive something, a second event that it must receive is
sent after it: the first event a browser gets is then the proof.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from support.clients import Browser, Connect
from support.server import ServerProcess
from support.waiting import UNIT
from support.ws import WsClient

from roomcast_client import Published, Tracked


async def event_with_id(client: WsClient, event_id: str) -> dict[str, Any]:
    """The event frame with this id, skipping other events (the server's own alerts)."""
    while True:
        frame = await client.next("event", 5 * UNIT)
        if frame["id"] == event_id:
            return frame


def delivered(frame: dict[str, Any], published: Published | Tracked) -> None:
    """``frame`` is the event ``published`` describes, at the same position."""
    assert frame["type"] == "event"
    assert frame["id"] == published.id
    assert frame["offset"] == published.offset
    if isinstance(published, Published):
        assert frame["epoch"] == published.epoch


async def test_send_user_notification_reaches_the_users_browsers_only(
    connect: Connect, browser: Browser, service: str, unique: Callable[[str], str]
) -> None:
    tenant, elsewhere = unique("t"), unique("o")
    tab = await browser("alice", "user", tenant=tenant)
    other_tab = await browser("alice", "user", tenant=tenant)  # a second tab
    bob = await browser("bob", "user", tenant=tenant)
    namesake = await browser("alice", "user", tenant=elsewhere)
    backend = connect(service)

    notification = {"title": "Your export is ready", "export_id": 812}
    published = await backend.send_user_notification("alice", notification, tenant_id=tenant)
    for client in (tab, other_tab):
        frame = await client.next("event")
        delivered(frame, published)
        assert (frame["room"], frame["event"]) == ("user.alice.notifications", "user.notification")
        assert frame["payload"] == notification
        assert frame["sender"] == {"user_id": "backend", "service": "backend"}

    # Neither another user of the tenant nor alice of another tenant got it.
    for client, user, in_tenant in ((bob, "bob", tenant), (namesake, "alice", elsewhere)):
        marker = await backend.send_user_notification(user, {"marker": True}, tenant_id=in_tenant)
        delivered(await client.next("event"), marker)


async def test_a_tenant_service_notifies_its_users_browsers(
    connect: Connect, browser: Browser, server: ServerProcess, unique: Callable[[str], str]
) -> None:
    tenant = unique("t")
    alice = await browser("alice", "user", tenant=tenant)
    billing = connect(server.token("billing", "service", tenant=tenant))
    published = await billing.send_user_notification("alice", {"invoice": 7}, tenant_id=tenant)
    frame = await alice.next("event")
    delivered(frame, published)
    assert frame["sender"] == {"user_id": "billing", "tenant_id": tenant, "service": "billing"}


async def test_send_tenant_data_update_reaches_every_browser_of_the_tenant_only(
    connect: Connect, browser: Browser, service: str, unique: Callable[[str], str]
) -> None:
    tenant, other = unique("t"), unique("o")
    members = [
        await browser("alice", "user", tenant=tenant),
        await browser("bob", "user", tenant=tenant),
        await browser("carol", "tenant_admin", tenant=tenant),
    ]
    outsider = await browser("dave", "user", tenant=other)
    backend = connect(service)

    published = await backend.send_tenant_data_update(tenant, {"table": "invoices", "changed": 3})
    for member in members:
        frame = await member.next("event")
        delivered(frame, published)
        assert (frame["room"], frame["event"]) == (
            f"tenant.{tenant}.notifications",
            "tenant.data_update",
        )
        assert frame["payload"] == {"table": "invoices", "changed": 3}

    marker = await backend.send_tenant_data_update(other, {"marker": True})
    delivered(await outsider.next("event"), marker)


async def test_platform_admins_and_security_alerts_reach_super_admins_browsers(
    connect: Connect, browser: Browser, service: str
) -> None:
    root = await browser("root", "super_admin")
    for room in ("platform.admins", "platform.security"):
        joined = await root.request({"type": "join_room", "room": room})
        assert (joined["type"], joined["room"]) == ("room_joined", room)
    backend = connect(service)

    to_admins = await backend.send_to_platform_admins("deploy.finished", {"version": "2.4.1"})
    frame = await event_with_id(root, to_admins.id)
    delivered(frame, to_admins)
    assert (frame["room"], frame["event"]) == ("platform.admins", "deploy.finished")
    assert frame["payload"] == {"version": "2.4.1"}

    alert = await backend.send_security_alert({"kind": "brute_force", "user_id": "bob"})
    frame = await event_with_id(root, alert.id)
    delivered(frame, alert)
    assert (frame["room"], frame["event"]) == ("platform.security", "security.alert")
    assert frame["payload"] == {"kind": "brute_force", "user_id": "bob"}


async def test_a_super_admin_may_send_to_platform_admins_too(
    connect: Connect, browser: Browser, server: ServerProcess
) -> None:
    root = await browser("root", "super_admin")
    await root.request({"type": "join_room", "room": "platform.admins"})
    operator = connect(server.token("ops", "super_admin"))
    published = await operator.send_to_platform_admins("maintenance.scheduled", {"at": "02:00"})
    frame = await event_with_id(root, published.id)
    assert frame["sender"] == {"user_id": "ops"}


async def test_track_user_activity_reaches_the_tenants_admins_browsers_only(
    connect: Connect, browser: Browser, service: str, unique: Callable[[str], str]
) -> None:
    tenant, other = unique("t"), unique("o")
    admin = await browser("carol", "tenant_admin", tenant=tenant)
    user = await browser("alice", "user", tenant=tenant)
    other_admin = await browser("erin", "tenant_admin", tenant=other)
    backend = connect(service)

    tracked = await backend.track_user_activity(
        "alice",
        tenant,
        action="document.open",
        session_id="s-81f2",
        ip_address="2001:DB8::1",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        details={"document": "d-42", "pages": 3},
    )
    assert isinstance(tracked, Tracked)
    assert tracked.offset >= 1
    frame = await admin.next("event")
    delivered(frame, tracked)
    assert (frame["room"], frame["event"]) == (f"tenant.{tenant}.admins", "user.activity")
    assert frame["payload"] == {
        "user_id": "alice",
        "tenant_id": tenant,
        "action": "document.open",
        "session_id": "s-81f2",
        "ip_address": "2001:db8::1",  # the server stores the normal form
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        "details": {"document": "d-42", "pages": 3},
    }
    # Published as the reporting service, not as the user.
    assert frame["sender"] == {"user_id": "backend", "service": "backend"}

    # Alice herself (not an admin) and another tenant's admin did not get it.
    marker = await backend.send_tenant_data_update(tenant, {"marker": True})
    delivered(await user.next("event"), marker)
    other_marker = await backend.track_user_activity("erin", other, action="marker")
    delivered(await other_admin.next("event"), other_marker)


async def test_a_tenant_service_tracks_activity_in_its_own_tenant(
    connect: Connect, browser: Browser, server: ServerProcess, unique: Callable[[str], str]
) -> None:
    tenant = unique("t")
    admin = await browser("carol", "tenant_admin", tenant=tenant)
    app = connect(server.token("app", "service", tenant=tenant))
    first = await app.track_user_activity("alice", action="login")  # tenant from the token
    second = await app.track_user_activity("alice", tenant, action="logout")
    assert second.offset == first.offset + 1
    for tracked, action in ((first, "login"), (second, "logout")):
        frame = await admin.next("event")
        delivered(frame, tracked)
        assert frame["payload"] == {"user_id": "alice", "tenant_id": tenant, "action": action}
