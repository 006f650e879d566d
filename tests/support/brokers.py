"""Brokers as a node sees them, for broker tests: rooms, drafts, and what is delivered.

A :class:`Node` is a started broker and the :class:`Collector` its deliveries
go to; a :data:`Factory` starts nodes sharing one backend. Each test's rooms
are its own (:func:`room`), so tests sharing a backend never meet.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from roomcast.brokers import Broker, Draft, Outcome, Publication, Published, Retention, expand
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1.event_pb2 import Event
from support.waiting import UNIT

__all__ = [
    "RETENTION",
    "Collector",
    "Factory",
    "Node",
    "draft",
    "event_of",
    "results_ok",
    "room",
]

RETENTION = Retention(size=100, ttl=60.0)
_ids = itertools.count(1)


def room(prefix: str = "chat", tenant: str | None = None) -> Room:
    """A room of its own for one test."""
    return Room.of(
        RoomName(f"{prefix}.r{uuid.uuid4().hex[:10]}"), TenantId(tenant) if tenant else None
    )


def draft(
    where: Room,
    text: str = "hello",
    *,
    retention: Retention = RETENTION,
    skip_history: bool = False,
    idempotency_key: str = "",
    signal: bool = False,
) -> Draft:
    """A draft whose body is a real encoded ``Event`` (without position)."""
    event_id = f"ev-{next(_ids)}"
    body = Event(room=where.name, event="said", id=event_id, tenant_id=where.tenant or "")
    body.payload.update({"text": text})
    return Draft(
        where,
        event_id,
        body.SerializeToString(),
        time.time_ns(),
        retention,
        skip_history or signal,
        idempotency_key,
        signal,
    )


class Collector:
    """A ``deliver`` callback that keeps what it is given, in order."""

    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.calls = 0
        self._changed = asyncio.Event()

    def __call__(self, publications: Sequence[Publication]) -> None:
        self.calls += 1
        self.publications.extend(publications)
        self._changed.set()

    def of(self, where: Room) -> list[Publication]:
        """What was delivered of one room."""
        return [p for p in self.publications if p.room.key == where.key]

    async def wait_for(
        self, where: Room, count: int, within: float = 5 * UNIT
    ) -> list[Publication]:
        """Wait until at least ``count`` events of ``where`` arrived; all of them."""
        async with asyncio.timeout(within):
            while len(self.of(where)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(where)

    async def settle(self, within: float = 0.3 * UNIT) -> None:
        """Give stray deliveries time to arrive (before asserting none did)."""
        await asyncio.sleep(within)


@dataclass
class Node:
    """A started broker, as one node sees it, and what it delivered."""

    broker: Broker
    events: Collector = field(default_factory=Collector)


Factory = Callable[..., Awaitable[Node]]


def event_of(data: bytes) -> Event:
    """Decode a delivered or read event."""
    return Event.FromString(data)


def results_ok(outcomes: Sequence[Outcome]) -> list[Published]:
    """The results of a batch, one per draft, asserting none failed."""
    results = expand(outcomes)
    assert all(isinstance(r, Published) for r in results), results
    return [r for r in results if isinstance(r, Published)]
