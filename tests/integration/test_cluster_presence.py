"""Presence across nodes: every node shows the members connected to every node.

Members join one room from nodes A, B and C (the session's ``three_nodes``);
``room_joined``, ``presence`` frames, ``presence.join``/``presence.leave``,
AdminService.GetPresence and ListRooms must show the whole platform.
"""

from __future__ import annotations

from collections.abc import Callable

from support.grpc import bearer
from support.server import ServerProcess
from support.waiting import eventually
from support.ws import join, websockets

from roomcast.v1 import admin_pb2, admin_pb2_grpc


def users(members: list[dict[str, str]]) -> list[str]:
    return [m["user_id"] for m in members]


async def presence_on(node: ServerProcess, room: str, tenant: str) -> list[tuple[str, str]]:
    """GetPresence on ``node``: (user, connection) pairs, oldest first."""
    async with node.channel() as channel:
        reply = await admin_pb2_grpc.AdminServiceStub(channel).GetPresence(
            admin_pb2.GetPresenceRequest(room=room, tenant_id=tenant),
            metadata=bearer(node.token("ops", "service")),
        )
    return [(m.user_id, m.connection_id) for m in reply.members]


async def test_members_joined_on_every_node_are_listed_and_announced_everywhere(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    a, b, c = three_nodes
    tenant, room = unique("t"), unique("chat.meet")
    async with websockets() as connect:
        alice = await connect(a, "alice", tenant=tenant)
        bob = await connect(b, "bob", tenant=tenant)
        carol = await connect(c, "carol", tenant=tenant)
        ids = {
            name: client.frames[0]["connection_id"]
            for name, client in (("alice", alice), ("bob", bob), ("carol", carol))
        }
        assert users((await join(alice, room))["presence"]) == ["alice"]
        assert users((await join(bob, room))["presence"]) == ["alice", "bob"]
        joined = await join(carol, room)
        assert [(m["user_id"], m["connection_id"]) for m in joined["presence"]] == [
            (name, ids[name]) for name in ("alice", "bob", "carol")
        ]
        # Joins on B and C reach the member on A, and so on.
        assert (await alice.next("presence.join"))["user"] == {
            "user_id": "bob",
            "tenant_id": tenant,
            "connection_id": ids["bob"],
        }
        assert (await alice.next("presence.join"))["user"]["user_id"] == "carol"
        assert (await bob.next("presence.join"))["user"]["user_id"] == "carol"
        everyone = [(name, ids[name]) for name in ("alice", "bob", "carol")]
        for node in three_nodes:
            assert await presence_on(node, room, tenant) == everyone
        for client in (alice, bob, carol):
            frame = await client.request({"type": "presence", "room": room})
            assert users(frame["members"]) == ["alice", "bob", "carol"]

        # A leave on B and a disconnect on C reach the others.
        assert (await bob.request({"type": "leave_room", "room": room}))["type"] == "room_left"
        for client in (alice, carol):
            left = await client.next("presence.leave")
            assert (left["room"], left["user"]["connection_id"]) == (room, ids["bob"])
        await carol.close()
        left = await alice.next("presence.leave")
        assert left["user"]["connection_id"] == ids["carol"]
        for node in three_nodes:
            assert await presence_on(node, room, tenant) == [("alice", ids["alice"])]
        assert users((await bob.request({"type": "presence", "room": room}))["members"]) == [
            "alice"
        ]
        # Nobody is told of their own joins and leaves.
        assert "alice" not in {f["user"]["user_id"] for f in alice.of_type("presence.join")}


async def test_list_rooms_counts_members_on_every_node(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    a, b, c = three_nodes
    tenant, room = unique("t"), unique("chat.count")
    async with websockets() as connect:
        on_a = [await connect(a, f"a{n}", tenant=tenant) for n in range(2)]
        on_b = await connect(b, "b0", tenant=tenant)
        for client in (*on_a, on_b):
            await join(client, room)
        # Only on C: the user's own rooms, which announce nobody and hold no events.
        await connect(c, "c0", tenant=tenant)
        expected = {
            room: 3,
            f"tenant.{tenant}.users": 4,
            f"tenant.{tenant}.notifications": 4,
            "user.c0.private": 1,
        }
        for node in three_nodes:
            async with node.channel() as channel:
                listed = await admin_pb2_grpc.AdminServiceStub(channel).ListRooms(
                    admin_pb2.ListRoomsRequest(tenant_id=tenant),
                    metadata=bearer(node.token("ops", "service")),
                )
            members = {r.name: r.members for r in listed.rooms}
            assert {name: members.get(name) for name in expected} == expected, node.log[-2000:]
        # A member leaving is counted out everywhere.
        await on_b.close()

        async def counted_out() -> bool:
            async with c.channel() as channel:
                listed = await admin_pb2_grpc.AdminServiceStub(channel).ListRooms(
                    admin_pb2.ListRoomsRequest(tenant_id=tenant, prefix="chat."),
                    metadata=bearer(c.token("ops", "service")),
                )
            return [(r.name, r.members) for r in listed.rooms] == [(room, 2)]

        await eventually(counted_out)
