"""Publisher: routes, drafts, refusals in place, signals (src/roomcast/publishing.py).

A real node on the memory broker; what the publisher built is read back as
the broker delivered and stored it.
"""

from __future__ import annotations

import pytest
from support.inputs import item
from support.local_node import FakeConnection, local_node
from support.tokens import principal, user

from roomcast import publishing
from roomcast.brokers import Published, expand
from roomcast.errors import (
    Forbidden,
    InvalidArgument,
    InvalidRoom,
    TooLarge,
    Unavailable,
)
from roomcast.node import Node
from roomcast.policy import Action
from roomcast.presence import ConnectionId
from roomcast.publishing import BATCH_CHUNK, MAX_IDEMPOTENCY_KEY
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1.event_pb2 import Event

CHAT = Room.of(RoomName("chat.x"), TenantId("acme"))
BACKEND = principal("backend", "service")  # a service of acme
PLATFORM = principal("ops", "service", tenant=None)


async def watched_node(**settings: object) -> tuple[Node, FakeConnection]:
    """A node, and a recipient of everything published to CHAT."""
    node = await local_node(**settings)
    watcher = FakeConnection(ConnectionId("w"))
    node.hub.add(CHAT, watcher)
    return node, watcher


def events(watcher: FakeConnection) -> list[Event]:
    return [Event.FromString(p.data) for p in watcher.delivered]


async def stored(node: Node) -> list[Event]:
    page = await node.history(BACKEND, CHAT.name, "", None, 1000, 1 << 24)
    return [Event.FromString(data) for data in page.items]


# -- what an event is made of --------------------------------------------------------


async def test_an_event_carries_its_route_payload_id_time_and_position() -> None:
    node, watcher = await watched_node()
    result = await node.publish(BACKEND, item("chat.x", "chat.message", {"text": "hello"}))
    (event,) = events(watcher)
    assert (event.room, event.event, event.tenant_id) == ("chat.x", "chat.message", "acme")
    assert (event.sender.user_id, event.sender.tenant_id) == ("backend", "acme")
    assert event.sender.service == "backend"  # a service not acting for a connection
    assert dict(event.payload) == {"text": "hello"}
    assert (event.id, event.offset, event.epoch) == (result.id, 1, result.epoch)
    assert event.time.seconds > 0
    assert await stored(node) == [event]


async def test_a_connections_event_names_it_as_sender() -> None:
    node, watcher = await watched_node()
    alice = user("alice")
    await node.publish(alice, item("chat.x"), connection_id="c9", is_member=True)
    sender = events(watcher)[0].sender
    assert (sender.user_id, sender.connection_id, sender.service) == ("alice", "c9", "")


async def test_event_ids_are_unique_across_publishes_batches_and_signals() -> None:
    node, watcher = await watched_node()
    await node.publish(BACKEND, item("chat.x"))
    await node.publish_batch(BACKEND, [item("chat.x"), item("chat.x")])
    resolved = node.policy.resolve(BACKEND, "chat.x")
    await node.signal(resolved, BACKEND, "c1", "typing", {"state": True})
    ids = [event.id for event in events(watcher)]
    assert len(ids) == 4
    assert len(set(ids)) == 4
    assert all(ids)


# -- routes ---------------------------------------------------------------------------


async def test_a_cached_route_is_not_shared_with_another_principal() -> None:
    node, _ = await watched_node()
    await node.publish(BACKEND, item("chat.x"))
    alice = user("alice")
    with pytest.raises(Forbidden):  # the same kind of publish, by a user who is no member
        await node.publish(alice, item("chat.x"))
    await node.publish(alice, item("chat.x"), connection_id="c1", is_member=True)
    with pytest.raises(Forbidden):  # a member's right does not outlive membership
        await node.publish(alice, item("chat.x"), connection_id="c1", is_member=False)


async def test_the_route_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publishing, "MAX_CACHED_ROUTES", 3)
    node, watcher = await watched_node()
    for n in range(10):
        await node.publish(BACKEND, item("chat.x", f"kind.n{n}"))
    assert len(node.publisher._routes) <= 3
    assert [event.event for event in events(watcher)] == [f"kind.n{n}" for n in range(10)]


async def test_check_publish_refuses_what_publish_would() -> None:
    node, _ = await watched_node()
    alice = user("alice")
    node.check_publish(alice, item("chat.x"), "c1")  # as a member: allowed
    with pytest.raises(Forbidden):
        node.check_publish(alice, item("tenant.acme.users"), "c1")
    with pytest.raises(InvalidRoom):
        node.check_publish(alice, item("nothing.known"), "c1")


# -- refusals -----------------------------------------------------------------------


async def test_a_refused_publish_leaves_nothing_behind() -> None:
    node, watcher = await watched_node(max_payload_bytes=100)
    with pytest.raises(TooLarge, match=r"payload: .* the limit is 100"):
        await node.publish(BACKEND, item("chat.x", data={"text": "x" * 200}))
    assert watcher.delivered == []
    assert await stored(node) == []
    assert node.metrics.counters.messages_in == 0
    assert (await node.publish(BACKEND, item("chat.x"))).offset == 1  # no offset was used


@pytest.mark.parametrize(("length", "accepted"), [(MAX_IDEMPOTENCY_KEY, True), (129, False)])
async def test_idempotency_keys_are_at_most_128_characters(length: int, accepted: bool) -> None:
    node, _ = await watched_node()
    publish = node.publish(BACKEND, item("chat.x", idempotency_key="k" * length))
    if accepted:
        assert (await publish).offset == 1
    else:
        with pytest.raises(InvalidArgument, match="idempotency_key"):
            await publish


async def test_a_repeated_idempotency_key_answers_with_the_first_result() -> None:
    node, watcher = await watched_node()
    first = await node.publish(BACKEND, item("chat.x", idempotency_key="k1"))
    again = await node.publish(BACKEND, item("chat.x", idempotency_key="k1"))
    assert (again.id, again.offset, again.duplicate) == (first.id, first.offset, True)
    assert len(watcher.delivered) == 1


async def test_a_batch_keeps_each_refusal_in_its_place() -> None:
    node, _ = await watched_node(max_payload_bytes=100)
    gate_refusal = InvalidArgument("payload: nested too deep")
    outcomes = await node.publish_batch(
        BACKEND,
        [
            item("chat.x"),
            item("chat..x"),
            item("chat.x"),
            item("chat.x", data={"text": "x" * 200}),
            item("chat.x"),  # refused by the gate already
            item("chat.x", idempotency_key="k" * 200),
            item("chat.x"),
        ],
        {4: gate_refusal},
    )
    results = expand(outcomes)
    assert [type(r) for r in results] == [
        Published,
        InvalidRoom,
        Published,
        TooLarge,
        InvalidArgument,
        InvalidArgument,
        Published,
    ]
    assert results[4] is gate_refusal
    published = [r for r in results if isinstance(r, Published)]
    assert [r.offset for r in published] == [1, 2, 3]
    assert [e.id for e in await stored(node)] == [r.id for r in published]
    assert node.metrics.counters.messages_in == 3


async def test_a_batch_larger_than_a_chunk_is_published_whole_and_in_order() -> None:
    node, watcher = await watched_node()
    count = 2 * BATCH_CHUNK + 10
    items = [item("chat.x", data={"n": n}) for n in range(count)]
    items[BATCH_CHUNK] = item("chat..x")  # a refusal in the second chunk
    results = expand(await node.publish_batch(BACKEND, items))
    assert isinstance(results[BATCH_CHUNK], InvalidRoom)
    published = [r for r in results if isinstance(r, Published)]
    assert [r.offset for r in published] == list(range(1, count))
    numbers = [int(e.payload["n"]) for e in events(watcher)]
    assert numbers == [n for n in range(count) if n != BATCH_CHUNK]


async def test_a_batch_over_the_size_limit_is_refused_whole() -> None:
    node, watcher = await watched_node(max_batch_size=3)
    with pytest.raises(TooLarge, match="4 items; the limit is 3"):
        await node.publish_batch(BACKEND, [item("chat.x")] * 4)
    assert watcher.delivered == []


async def test_a_draining_node_refuses_publishes() -> None:
    node, watcher = await watched_node()
    node.begin_drain()
    with pytest.raises(Unavailable):
        await node.publish(BACKEND, item("chat.x"))
    with pytest.raises(Unavailable):
        await node.publish_batch(BACKEND, [item("chat.x")])
    assert watcher.delivered == []


# -- skipping history, and signals ----------------------------------------------------


async def test_an_event_that_skips_history_is_delivered_with_offset_0() -> None:
    node, watcher = await watched_node()
    result = await node.publish(BACKEND, item("chat.x", skip_history=True))
    assert result.offset == 0
    assert [p.offset for p in watcher.delivered] == [0]
    assert await stored(node) == []


async def test_a_signal_is_delivered_marked_and_never_stored() -> None:
    node, watcher = await watched_node()
    resolved = node.policy.resolve(user("alice"), "chat.x")
    node.policy.check(user("alice"), resolved, Action.PUBLISH, is_member=True)
    await node.signal(resolved, user("alice"), "c1", "cursor", {"position": {"x": 1}})
    (publication,) = watcher.delivered
    assert publication.signal
    assert publication.offset == 0
    event = Event.FromString(publication.data)
    assert (event.event, event.sender.connection_id) == ("cursor", "c1")
    assert dict(event.payload["position"]) == {"x": 1}
    assert await stored(node) == []


async def test_signal_data_passes_the_gate_and_a_refusal_names_its_field() -> None:
    node, watcher = await watched_node()
    resolved = node.policy.resolve(user("alice"), "chat.x")
    deep: dict[str, object] = {}
    for _ in range(40):
        deep = {"in": deep}
    with pytest.raises(InvalidArgument, match=r"^position"):
        await node.signal(resolved, user("alice"), "c1", "cursor", {"position": deep})
    assert watcher.delivered == []
