"""The embedded broker: one node, history in process memory.

Publishes are delivered synchronously, in the publishing call, so a room's
events reach local recipients in offset order with no task in between; a
batch is delivered at once, after every event of it has its position.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..history import Page, Position, RoomLog
from ..idempotency import IdempotencyCache
from ..rooms import Room
from ..wire import OFFSET_TAG, epoch_field, varint
from .shared import SharedState
from .values import (
    Deliver,
    Draft,
    Outcome,
    Publication,
    Published,
    PublishedRun,
    Retention,
    RoomStats,
)

__all__ = ["MemoryBroker"]


class MemoryBroker:
    """A :class:`~roomcast.brokers.broker.Broker` for a single node.

    Args:
        idempotency_ttl: seconds an idempotency key is remembered.
        idempotency_max_keys: keys remembered at most.
    """

    def __init__(
        self, *, idempotency_ttl: float = 300.0, idempotency_max_keys: int = 100_000
    ) -> None:
        # Per room: the room, its log, and its epoch as an encoded field.
        self._logs: dict[str, tuple[Room, RoomLog[bytes], bytes]] = {}
        self._seen: IdempotencyCache[Published] = IdempotencyCache(
            idempotency_ttl, idempotency_max_keys
        )
        self._deliver: Deliver | None = None
        # One node: its own presence and registry are the whole truth.
        self.shared: SharedState | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    def _log(self, room: Room, retention: Retention) -> tuple[Room, RoomLog[bytes], bytes]:
        entry = self._logs.get(room.key)
        if entry is None:
            log: RoomLog[bytes] = RoomLog(retention.size, retention.ttl)
            entry = self._logs[room.key] = (room, log, epoch_field(log.epoch))
        return entry

    def _publish(self, draft: Draft, now: float, delivered: list[Publication]) -> Published:
        """Give ``draft`` its position, store it, and queue it for delivery."""
        key = draft.idempotency_key
        if key:
            seen_key = f"{draft.room.key}\n{key}"
            earlier = self._seen.get(seen_key, now)
            if earlier is not None:
                return Published(earlier.id, earlier.offset, earlier.epoch, duplicate=True)
        entry = self._logs.get(draft.room.key) or self._log(draft.room, draft.retention)
        log, epoch = entry[1], entry[2]
        if draft.skip_history or log.size <= 0:
            offset = 0
            data = draft.body + epoch
        else:
            offset = log.next_offset()
            data = b"".join((draft.body, OFFSET_TAG, varint(offset), epoch))
            log.store(offset, data, now)
        result = Published(draft.id, offset, log.epoch)
        if key:
            self._seen.put(seen_key, result, now)
        delivered.append(
            Publication(draft.room, offset, log.epoch, draft.accepted_ns, data, draft.signal)
        )
        return result

    async def publish(self, draft: Draft) -> Published:
        delivered: list[Publication] = []
        result = self._publish(draft, time.time(), delivered)
        if delivered and self._deliver is not None:
            self._deliver(delivered)
        return result

    async def publish_many(self, drafts: Sequence[Draft]) -> list[Outcome]:
        # Delivered in one call, after every draft has its position: the
        # fan-out then hands each recipient a room's run of events at once.
        now = time.time()
        delivered: list[Publication] = []
        outcomes: list[Outcome] = []
        # A batch is mostly one room's plain events in a row. Those take the
        # short way below, with the room's log bound to locals; they are
        # stored together and answered with one PublishedRun when the row
        # ends. Anything else goes through _publish, after the row so far.
        run: PublishedRun | None = None
        log: RoomLog[bytes] | None = None
        run_key, epoch, epoch_bytes = "", "", b""
        ids: list[str] = []
        entries: list[tuple[int, float, bytes]] = []
        for draft in drafts:
            room = draft.room
            plain = not (draft.idempotency_key or draft.skip_history or draft.signal)
            if run is None or not plain or room.key != run_key:
                if run is not None:
                    assert log is not None
                    log.store_many(entries)
                    entries = []
                    run = None
                _, log, epoch_bytes = self._logs.get(room.key) or self._log(room, draft.retention)
                if not plain or log.size <= 0:
                    outcomes.append(self._publish(draft, now, delivered))
                    continue
                run = PublishedRun([], log.top + 1, log.epoch)
                outcomes.append(run)
                run_key, ids, epoch = room.key, run.ids, log.epoch
            assert log is not None
            offset = log.top = log.top + 1  # log.next_offset(), without the call
            data = b"".join((draft.body, OFFSET_TAG, varint(offset), epoch_bytes))
            entries.append((offset, now, data))
            ids.append(draft.id)
            delivered.append(Publication(room, offset, epoch, draft.accepted_ns, data))
        if run is not None:
            assert log is not None
            log.store_many(entries)
        if delivered and self._deliver is not None:
            self._deliver(delivered)
        return outcomes

    async def read(
        self, room: Room, since: Position | None, limit: int, retention: Retention
    ) -> Page[bytes]:
        entry = self._logs.get(room.key)
        if entry is None:
            # Reading a room creates nothing: an unknown room has no events
            # yet, and only the very beginning can be resumed.
            blank: RoomLog[bytes] = RoomLog(retention.size, retention.ttl, epoch="")
            return blank.read(since, limit, time.time())
        return entry[1].read(since, limit, time.time())

    # One node hears everything it publishes: nothing to listen for.
    async def listen(self, room_key: str) -> None:
        return None

    async def unlisten(self, room_key: str) -> None:
        return None

    async def listen_pattern(self, pattern_key: str) -> None:
        return None

    async def unlisten_pattern(self, pattern_key: str) -> None:
        return None

    async def rooms(self) -> list[RoomStats]:
        now = time.time()
        stats = []
        for room, log, _ in self._logs.values():
            log.expire(now)
            stats.append(RoomStats(room, log.position, len(log)))
        return stats

    def sweep(self, now: float, keep: set[str]) -> int:
        """Forget rooms whose history has expired and nobody follows.

        Their next event starts a new epoch, as the documented guarantee says.

        Returns:
            How many rooms were forgotten.
        """
        idle = []
        for key, (_, log, _) in self._logs.items():
            log.expire(now)
            if not len(log) and key not in keep:
                idle.append(key)
        for key in idle:
            del self._logs[key]
        return len(idle)

    async def healthy(self) -> bool:
        return True
