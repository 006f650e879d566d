"""The embedded broker (src/roomcast/brokers/memory.py) against the conformance suite."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.brokers import Factory, Node, draft, room
from support.conformance import BrokerConformance

from roomcast.brokers.memory import MemoryBroker
from roomcast.rooms import Room


class TestMemoryBroker(BrokerConformance):
    """The delivery guarantee, on one node."""

    @pytest.fixture
    async def make(self) -> AsyncIterator[Factory]:
        nodes: list[Node] = []

        async def start(**options: Any) -> Node:
            node = Node(MemoryBroker(**options))
            await node.broker.start(node.events)
            nodes.append(node)
            return node

        yield start
        for node in nodes:
            await node.broker.close()

    async def forget(self, node: Node, where: Room) -> None:
        assert isinstance(node.broker, MemoryBroker)
        node.broker.sweep(time.time() + 10**9, keep=set())


async def test_delivery_happens_in_the_publishing_call() -> None:
    broker = MemoryBroker()
    node = Node(broker)
    await broker.start(node.events)
    where = room()
    await broker.publish(draft(where))
    assert [p.offset for p in node.events.of(where)] == [1]
    await broker.close()


async def test_sweep_keeps_rooms_someone_follows() -> None:
    broker = MemoryBroker()
    node = Node(broker)
    await broker.start(node.events)
    kept, dropped = room(), room()
    await broker.publish(draft(kept))
    await broker.publish(draft(dropped))
    assert broker.sweep(time.time() + 10**9, keep={kept.key}) == 1
    assert (await broker.publish(draft(kept))).offset == 2
    assert (await broker.publish(draft(dropped))).offset == 1
    await broker.close()
