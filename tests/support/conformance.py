"""The broker conformance suite: the delivery guarantee of brokers/broker.py, once.

Every broker runs it by subclassing :class:`BrokerConformance` and
providing the ``make`` fixture (and :meth:`BrokerConformance.forget`), the
way websockets runs one suite over client and server. A subclass named
``Test…`` is collected; this base is not.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from roomcast.brokers import Published, Retention
from roomcast.history import Position
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.wire import epoch_field, position_fields
from support.brokers import RETENTION, Factory, Node, draft, event_of, results_ok, room
from support.waiting import UNIT

__all__ = ["BrokerConformance"]


class BrokerConformance:
    """What every broker guarantees (brokers/broker.py), tested the same way."""

    # -- what a broker's subclass provides -----------------------------------

    @pytest.fixture
    def make(self) -> Factory:
        """Start brokers sharing one backend, and close them afterwards.

        Subclasses override it. Options: ``idempotency_ttl`` (seconds).
        """
        raise NotImplementedError

    async def forget(self, node: Node, where: Room) -> None:
        """Lose a room's history and position entirely (expiry, eviction, restart)."""
        raise NotImplementedError

    @pytest.fixture
    async def node(self, make: Factory) -> Node:
        """One started broker with default options."""
        return await make()

    # -- offsets and epochs ----------------------------------------------------

    async def test_offsets_start_at_one_and_increase_by_one(self, node: Node) -> None:
        where = room()
        results = [await node.broker.publish(draft(where, f"n{n}")) for n in range(5)]
        assert [r.offset for r in results] == [1, 2, 3, 4, 5]
        assert len({r.epoch for r in results}) == 1
        assert all(not r.duplicate for r in results)

    async def test_rooms_have_their_own_offsets_and_epochs(self, node: Node) -> None:
        first, second = room(), room()
        acme = room("chat", "acme")
        globex = Room.of(acme.name, TenantId("globex"))
        results = {
            key: await node.broker.publish(draft(where))
            for key, where in (("a", first), ("b", second), ("c", acme), ("d", globex))
        }
        assert all(r.offset == 1 for r in results.values())
        epochs = [r.epoch for r in results.values()]
        assert len(set(epochs)) == 4
        assert all(len(epoch) == 8 for epoch in epochs)

    async def test_a_lost_room_starts_a_new_epoch(self, node: Node) -> None:
        where = room()
        before = [await node.broker.publish(draft(where)) for _ in range(3)]
        await self.forget(node, where)
        after = await node.broker.publish(draft(where))
        assert after.offset == 1
        assert after.epoch != before[0].epoch
        page = await node.broker.read(where, Position(3, before[0].epoch), 10, RETENTION)
        assert not page.recovered
        assert "epoch changed" in page.reason
        assert page.top == Position(1, after.epoch)

    async def test_concurrent_publishes_get_unique_consecutive_offsets(self, node: Node) -> None:
        where = room()
        await node.broker.listen(where.key)
        results = await asyncio.gather(*(node.broker.publish(draft(where)) for _ in range(40)))
        assert sorted(r.offset for r in results) == list(range(1, 41))
        delivered = await node.events.wait_for(where, 40)
        assert [p.offset for p in delivered] == list(range(1, 41))

    # -- delivery --------------------------------------------------------------

    async def test_a_listened_room_is_delivered_with_its_position(self, node: Node) -> None:
        where = room("chat", "acme")
        await node.broker.listen(where.key)
        sent = draft(where, "hi")
        result = await node.broker.publish(sent)
        [publication] = await node.events.wait_for(where, 1)
        assert publication.room == where
        assert (publication.offset, publication.epoch) == (result.offset, result.epoch)
        assert publication.accepted_ns == sent.accepted_ns
        assert bytes(publication.data) == sent.body + position_fields(1, result.epoch)
        event = event_of(publication.data)
        assert (event.offset, event.epoch, event.id) == (1, result.epoch, sent.id)
        assert event.payload["text"] == "hi"

    async def test_events_arrive_in_offset_order(self, node: Node) -> None:
        where = room()
        await node.broker.listen(where.key)
        for n in range(30):
            await node.broker.publish(draft(where, f"n{n}"))
        delivered = await node.events.wait_for(where, 30)
        assert [p.offset for p in delivered] == list(range(1, 31))
        assert [event_of(p.data).payload["text"] for p in delivered] == [f"n{n}" for n in range(30)]

    async def test_patterns_deliver_matching_rooms(self, node: Node) -> None:
        tenant = f"t{uuid.uuid4().hex[:8]}"
        inside = Room.of(RoomName("chat.lobby"), TenantId(tenant))
        await node.broker.listen_pattern(f"{tenant}|chat.*")
        await node.broker.publish(draft(inside))
        [publication] = await node.events.wait_for(inside, 1)
        assert publication.offset == 1

    async def test_a_room_listened_twice_is_delivered_once(self, node: Node) -> None:
        tenant = f"t{uuid.uuid4().hex[:8]}"
        where = Room.of(RoomName("chat.lobby"), TenantId(tenant))
        await node.broker.listen(where.key)
        await node.broker.listen_pattern(f"{tenant}|chat.*")
        await node.broker.listen_pattern("*|chat.*")
        await node.broker.listen_pattern(f"{tenant}|**")
        for _ in range(3):
            await node.broker.publish(draft(where))
        await node.events.wait_for(where, 3)
        await node.events.settle()
        assert [p.offset for p in node.events.of(where)] == [1, 2, 3]

    # -- skip history, history limits ------------------------------------------

    async def test_skip_history_events_have_offset_zero_and_are_not_stored(
        self, node: Node
    ) -> None:
        where = room()
        await node.broker.listen(where.key)
        first = await node.broker.publish(draft(where))
        typing = draft(where, "typing", skip_history=True)
        skipped = await node.broker.publish(typing)
        third = await node.broker.publish(draft(where))
        assert (first.offset, skipped.offset, third.offset) == (1, 0, 2)
        assert skipped.epoch == first.epoch
        delivered = await node.events.wait_for(where, 3)
        assert [p.offset for p in delivered] == [1, 0, 2]
        assert bytes(delivered[1].data) == typing.body + epoch_field(first.epoch)
        page = await node.broker.read(where, None, 10, RETENTION)
        assert [event_of(item).offset for item in page.items] == [1, 2]

    async def test_signals_travel_as_signals_and_are_never_stored(self, node: Node) -> None:
        where = room()
        await node.broker.listen(where.key)
        stored = await node.broker.publish(draft(where))
        typing = draft(where, "typing", signal=True)
        signalled = await node.broker.publish(typing)
        assert (signalled.offset, signalled.epoch) == (0, stored.epoch)
        delivered = await node.events.wait_for(where, 2)
        assert [(p.offset, p.signal) for p in delivered] == [(1, False), (0, True)]
        assert bytes(delivered[1].data) == typing.body + epoch_field(stored.epoch)
        page = await node.broker.read(where, None, 10, RETENTION)
        assert [event_of(item).offset for item in page.items] == [1]

    async def test_history_keeps_the_last_size_events(self, node: Node) -> None:
        where = room()
        small = Retention(size=3, ttl=60.0)
        results = [await node.broker.publish(draft(where, retention=small)) for _ in range(7)]
        epoch = results[0].epoch
        page = await node.broker.read(where, None, 10, small)
        assert [event_of(item).offset for item in page.items] == [5, 6, 7]
        assert page.top == Position(7, epoch)
        assert page.recovered
        lost = await node.broker.read(where, Position(2, epoch), 10, small)
        assert not lost.recovered
        assert "no longer reaches back to offset 3" in lost.reason
        assert [event_of(item).offset for item in lost.items] == [5, 6, 7]
        kept = await node.broker.read(where, Position(4, epoch), 10, small)
        assert kept.recovered
        assert [event_of(item).offset for item in kept.items] == [5, 6, 7]

    async def test_a_room_without_history_numbers_nothing(self, node: Node) -> None:
        where = room()
        none = Retention(size=0, ttl=60.0)
        results = [await node.broker.publish(draft(where, retention=none)) for _ in range(2)]
        assert [r.offset for r in results] == [0, 0]
        page = await node.broker.read(where, None, 10, none)
        assert list(page.items) == []
        assert page.top == Position(0, results[0].epoch)

    async def test_history_forgets_events_older_than_the_ttl(self, node: Node) -> None:
        where = room()
        brief = Retention(size=10, ttl=0.5 * UNIT)
        old = [await node.broker.publish(draft(where, retention=brief)) for _ in range(2)]
        await asyncio.sleep(0.8 * UNIT)
        epoch = old[0].epoch
        expired = await node.broker.read(where, None, 10, brief)
        assert list(expired.items) == []
        assert expired.top == Position(2, epoch)
        fresh = await node.broker.publish(draft(where, retention=brief))
        assert (fresh.offset, fresh.epoch) == (3, epoch)
        page = await node.broker.read(where, Position(2, epoch), 10, brief)
        assert page.recovered
        assert [event_of(item).offset for item in page.items] == [3]
        gone = await node.broker.read(where, Position(1, epoch), 10, brief)
        assert not gone.recovered
        assert [event_of(item).offset for item in gone.items] == [3]

    # -- reading and recovery --------------------------------------------------

    async def test_read_serves_events_after_a_position(self, node: Node) -> None:
        where = room()
        results = [await node.broker.publish(draft(where, f"n{n}")) for n in range(6)]
        epoch = results[0].epoch
        everything = await node.broker.read(where, None, 100, RETENTION)
        assert [event_of(item).offset for item in everything.items] == [1, 2, 3, 4, 5, 6]
        assert all(event_of(item).epoch == epoch for item in everything.items)
        assert everything.top == Position(6, epoch)
        assert everything.recovered
        after = await node.broker.read(where, Position(2, epoch), 100, RETENTION)
        assert [event_of(item).offset for item in after.items] == [3, 4, 5, 6]
        assert after.recovered
        limited = await node.broker.read(where, Position(2, epoch), 2, RETENTION)
        assert [event_of(item).offset for item in limited.items] == [3, 4]
        level = await node.broker.read(where, Position(6, epoch), 100, RETENTION)
        assert (list(level.items), level.recovered) == ([], True)
        start = await node.broker.read(where, Position(0, ""), 100, RETENTION)
        assert start.recovered
        assert len(start.items) == 6

    @pytest.mark.parametrize(
        ("since", "reason"),
        [
            (Position(9, "="), "ahead of the room"),
            (Position(2, "other123"), "epoch changed"),
            (Position(2, ""), "needs its epoch"),
        ],
        ids=["ahead", "another-epoch", "no-epoch"],
    )
    async def test_read_refuses_positions_it_cannot_serve(
        self, node: Node, since: Position, reason: str
    ) -> None:
        where = room()
        results = [await node.broker.publish(draft(where)) for _ in range(3)]
        epoch = results[0].epoch
        if since.epoch == "=":
            since = Position(since.offset, epoch)
        page = await node.broker.read(where, since, 100, RETENTION)
        assert not page.recovered
        assert reason in page.reason
        # What is held is still read, from the oldest on.
        assert [event_of(item).offset for item in page.items] == [1, 2, 3]
        assert page.top == Position(3, epoch)

    async def test_an_unknown_room_reads_empty(self, node: Node) -> None:
        where = room()
        page = await node.broker.read(where, None, 10, RETENTION)
        assert (list(page.items), page.top, page.recovered) == ([], Position(0, ""), True)
        start = await node.broker.read(where, Position(0, ""), 10, RETENTION)
        assert start.recovered
        stale = await node.broker.read(where, Position(4, "abcd1234"), 10, RETENTION)
        assert not stale.recovered
        # Reading creates nothing: the first publish still gets offset 1.
        assert (await node.broker.publish(draft(where))).offset == 1

    # -- idempotency -----------------------------------------------------------

    async def test_an_idempotent_publish_lands_once(self, node: Node) -> None:
        where = room()
        await node.broker.listen(where.key)
        first = await node.broker.publish(draft(where, idempotency_key="order-1"))
        again = await node.broker.publish(draft(where, "retry", idempotency_key="order-1"))
        other = await node.broker.publish(draft(where, idempotency_key="order-2"))
        assert (first.offset, first.duplicate) == (1, False)
        assert again == Published(first.id, 1, first.epoch, duplicate=True)
        assert other.offset == 2
        await node.events.wait_for(where, 2)
        await node.events.settle()
        assert [p.offset for p in node.events.of(where)] == [1, 2]
        page = await node.broker.read(where, None, 10, RETENTION)
        assert len(page.items) == 2

    async def test_idempotency_keys_belong_to_their_room(self, node: Node) -> None:
        first, second = room(), room()
        a = await node.broker.publish(draft(first, idempotency_key="k"))
        b = await node.broker.publish(draft(second, idempotency_key="k"))
        assert not a.duplicate
        assert not b.duplicate

    async def test_idempotency_keys_expire(self, make: Factory) -> None:
        node = await make(idempotency_ttl=0.3 * UNIT)
        where = room()
        first = await node.broker.publish(draft(where, idempotency_key="k"))
        assert (await node.broker.publish(draft(where, idempotency_key="k"))).duplicate
        await asyncio.sleep(0.6 * UNIT)
        later = await node.broker.publish(draft(where, idempotency_key="k"))
        assert not later.duplicate
        assert later.offset == first.offset + 1

    async def test_a_skipped_idempotent_publish_is_remembered(self, node: Node) -> None:
        where = room()
        first = await node.broker.publish(draft(where, skip_history=True, idempotency_key="k"))
        again = await node.broker.publish(draft(where, skip_history=True, idempotency_key="k"))
        assert again == Published(first.id, 0, first.epoch, duplicate=True)

    # -- batches ---------------------------------------------------------------

    async def test_publish_many_answers_each_item_in_order(self, node: Node) -> None:
        a, b = room(), room("chat", "acme")
        await node.broker.listen(a.key)
        await node.broker.listen(b.key)
        drafts = [
            draft(a, "a1"),
            draft(b, "b1"),
            draft(a, "a2", idempotency_key="k"),
            draft(a, "typing", skip_history=True),
            draft(b, "b2"),
            draft(a, "a2 again", idempotency_key="k"),
            draft(a, "a3"),
        ]
        published = results_ok(await node.broker.publish_many(drafts))
        assert [(r.offset, r.duplicate) for r in published] == [
            (1, False),
            (1, False),
            (2, False),
            (0, False),
            (2, False),
            (2, True),
            (3, False),
        ]
        assert [r.id for r in published] == [d.id for d in drafts[:5]] + [
            drafts[2].id,
            drafts[6].id,
        ]
        assert published[0].epoch != published[1].epoch
        delivered_a = await node.events.wait_for(a, 4)
        delivered_b = await node.events.wait_for(b, 2)
        await node.events.settle()
        assert [p.offset for p in node.events.of(a)] == [1, 2, 0, 3]
        assert [event_of(p.data).payload["text"] for p in delivered_a] == [
            "a1",
            "a2",
            "typing",
            "a3",
        ]
        assert [p.offset for p in delivered_b] == [1, 2]

    async def test_publish_many_keeps_history_in_offset_order(self, node: Node) -> None:
        # Plain events, an idempotent one and one kept out of history, mixed
        # in one batch and past the history size: what is read back is the
        # newest events, in offset order.
        a, b = room(), room()
        small = Retention(size=4, ttl=60.0)
        texts = ["1", "2", "3", "4", "5", "6"]
        drafts = [draft(a, t, retention=small) for t in texts[:2]]
        drafts += [draft(a, "3", retention=small, idempotency_key="k")]
        drafts += [draft(b, "other", retention=small)]
        drafts += [draft(a, "not kept", retention=small, skip_history=True)]
        drafts += [draft(a, t, retention=small) for t in texts[3:]]
        published = results_ok(await node.broker.publish_many(drafts))
        assert [r.offset for r in published] == [1, 2, 3, 1, 0, 4, 5, 6]
        page = await node.broker.read(a, None, 10, small)
        assert [event_of(data).offset for data in page.items] == [3, 4, 5, 6]
        assert [event_of(data).payload["text"] for data in page.items] == texts[2:]
        assert page.top.offset == 6

    async def test_publish_many_of_nothing(self, node: Node) -> None:
        assert await node.broker.publish_many([]) == []

    async def test_publish_many_then_publish_continues_the_offsets(self, node: Node) -> None:
        where = room()
        batch = results_ok(await node.broker.publish_many([draft(where) for _ in range(50)]))
        assert [r.offset for r in batch] == list(range(1, 51))
        assert (await node.broker.publish(draft(where))).offset == 51

    # -- inspection ------------------------------------------------------------

    async def test_rooms_lists_positions_and_history_sizes(self, node: Node) -> None:
        a, b = room(), room("chat", "acme")
        small = Retention(size=2, ttl=60.0)
        for _ in range(3):
            await node.broker.publish(draft(a, retention=small))
        last = await node.broker.publish(draft(b))
        stats = {s.room.key: s for s in await node.broker.rooms()}
        assert stats[a.key].room == a
        assert stats[a.key].position.offset == 3
        assert stats[a.key].history_size == 2
        assert stats[b.key].room == b
        assert stats[b.key].position == Position(1, last.epoch)
        assert stats[b.key].history_size == 1

    async def test_healthy(self, node: Node) -> None:
        assert await node.broker.healthy()
