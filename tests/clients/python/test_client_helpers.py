"""The helper verbs reach the rooms the right people follow; handlers run in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from support.clients import Connect, Take
from support.server import ServerProcess
from support.waiting import UNIT

from roomcast_client import (
    Event,
    EventSubscription,
    Gap,
    InvalidArgument,
    PermissionDenied,
    Position,
)


async def test_send_user_notification_reaches_the_user(
    connect: Connect, server: ServerProcess, service: str, unique: Callable[[str], str], take: Take
) -> None:
    user = unique("u")
    alice = connect(server.token(user, "user", tenant="acme"))
    async with alice.subscribe(f"user.{user}.notifications") as inbox:
        published = await connect(service).send_user_notification(
            user, {"title": "Build finished", "build": 42}, tenant_id="acme"
        )
        [event] = await take(inbox, 1)
    assert isinstance(event, Event)
    assert event.id == published.id
    assert (event.room, event.event, event.tenant_id) == (
        f"user.{user}.notifications",
        "user.notification",
        "acme",
    )
    assert event.payload == {"title": "Build finished", "build": 42.0}


async def test_a_tenant_service_notifies_its_own_users_only(
    connect: Connect, server: ServerProcess, unique: Callable[[str], str]
) -> None:
    billing = connect(server.token("billing", "service", tenant="acme"))
    await billing.send_user_notification(unique("u"), {"text": "hi"}, tenant_id="acme")
    with pytest.raises(PermissionDenied, match="act only in it"):
        await billing.send_user_notification(unique("u"), {"text": "hi"}, tenant_id="globex")


async def test_ids_that_would_name_another_room_are_refused(connect: Connect, service: str) -> None:
    client = connect(service)
    with pytest.raises(InvalidArgument, match="user_id"):
        await client.send_user_notification("bob.private", {}, tenant_id="acme")
    with pytest.raises(InvalidArgument, match="tenant_id"):
        await client.send_tenant_data_update("acme.users", {})


async def test_platform_admins_and_security_alerts_reach_super_admins(
    connect: Connect, server: ServerProcess, service: str, take: Take
) -> None:
    admin = connect(server.token("root", "super_admin"))
    backend = connect(service)
    async with admin.subscribe(["platform.admins", "platform.security"]) as events:
        to_admins = await backend.send_to_platform_admins("deploy.started", {"version": "1.2"})
        alert = await backend.send_security_alert({"kind": "brute_force", "user": "bob"})
        received = await take(events, 2)
    by_id = {item.id: item for item in received if isinstance(item, Event)}
    assert by_id[to_admins.id].room == "platform.admins"
    assert by_id[to_admins.id].event == "deploy.started"
    assert by_id[alert.id].room == "platform.security"
    assert by_id[alert.id].event == "security.alert"
    assert by_id[alert.id].payload == {"kind": "brute_force", "user": "bob"}


async def test_tenant_data_update_reaches_every_member_of_the_tenant(
    connect: Connect, server: ServerProcess, service: str, unique: Callable[[str], str], take: Take
) -> None:
    tenant = unique("t")
    member = connect(server.token("carol", "user", tenant=tenant))
    async with member.subscribe(f"tenant.{tenant}.**") as events:
        published = await connect(service).send_tenant_data_update(tenant, {"table": "invoices"})
        [event] = await take(events, 1)
    assert isinstance(event, Event)
    assert event.id == published.id
    assert (event.room, event.event) == (f"tenant.{tenant}.notifications", "tenant.data_update")


async def test_subscribe_to_events_survives_a_raising_handler(
    connect: Connect, service: str, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    room = unique("global.h")
    client = connect(service)
    seen: list[str] = []
    done = asyncio.Event()

    async def handler(event: Event) -> None:
        seen.append(event.event)
        if event.event == "bad":
            raise RuntimeError("handler bug")
        if event.event == "last":
            done.set()

    handle = await client.subscribe_to_events("global.*", handler)
    assert isinstance(handle, EventSubscription)
    with caplog.at_level(logging.ERROR, logger="roomcast_client"):
        for name in ("good", "bad", "last"):
            await client.publish(room, name)
        await asyncio.wait_for(done.wait(), 5 * UNIT)
    assert seen == ["good", "bad", "last"]
    assert (handle.handled, handle.failed) == (2, 1)
    assert "handler bug" in caplog.text
    assert not handle.done()

    handle.cancel()
    await handle.wait()
    assert handle.done()
    await client.publish(room, "after-cancel")
    await asyncio.sleep(0.2 * UNIT)
    assert seen == ["good", "bad", "last"]


async def test_subscribe_to_events_hands_gaps_to_on_gap(
    connect: Connect, service: str, unique: Callable[[str], str]
) -> None:
    room = unique("global.g")
    client = connect(service)
    await client.publish(room, "stored")
    gaps: asyncio.Queue[Gap] = asyncio.Queue()

    async def ignore(event: Event) -> None:
        pass

    # A resume point from another epoch, as after a server restart.
    handle = await client.subscribe_to_events(
        room, ignore, since={room: Position(1, "old-epoch")}, on_gap=gaps.put
    )
    gap = await asyncio.wait_for(gaps.get(), 5 * UNIT)
    await handle.stop()
    assert (gap.room, gap.position.offset) == (room, 1)
    assert "epoch" in gap.reason


async def test_a_refused_subscribe_to_events_raises_at_once(
    connect: Connect, server: ServerProcess
) -> None:
    user = connect(server.token("alice", "user", tenant="acme"))

    async def handler(event: Event) -> None:
        pass

    with pytest.raises(PermissionDenied):
        await user.subscribe_to_events("platform.security", handler)


async def test_closing_the_client_stops_its_handlers(connect: Connect, service: str) -> None:
    client = connect(service)

    async def handler(event: Event) -> None:
        pass

    handle = await client.subscribe_to_events("global.*", handler)
    await client.close()
    assert handle.done()
    assert handle.error is None
