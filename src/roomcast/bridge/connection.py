"""One client's WebSocket as the core sees it, and the write path to it.

Fan-out never awaits and never encodes per connection: an event's WebSocket
frame (header and JSON) is made once (:func:`ws_frame`), then each
connection's ``deliver`` only appends those shared bytes to its queue. A
:class:`Flusher` writes every queue once per event-loop turn, so all the
frames a connection gets in one turn go out in one ``transport.write`` — one
system call, whatever the number of events.

Each connection's unsent bytes are bounded: when the transport's buffer
grows past the limit (a client that stopped reading), the connection is
closed with 4100 and nothing more is queued for it, so one stalled reader
can neither grow memory nor delay the other members. A reply a client asked
for (history, missed events, presence) is built only once there is room for
it in that bound (:meth:`Connection.reply_budget`): a client that asks and
does not read waits for its own bytes, then is closed as a slow consumer,
without the server building anything more for it.

Server frames are unmasked and, with compression off, the same for every
connection — which is what makes the shared bytes possible (RFC 6455 5.1:
"A server MUST NOT mask any frames that it sends to the client").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from ..brokers import Publication
from ..connections import Joined
from ..errors import SlowConsumer
from ..presence import ConnectionId
from ..rooms import Room
from .frames import FrameId, encode, encode_publication, room_joined_frame

__all__ = ["Connection", "Flusher", "ws_frame"]


def ws_frame(text: bytes) -> bytes:
    """``text`` (UTF-8 JSON) as one unmasked WebSocket text frame, header included."""
    return Frame(Opcode.TEXT, text).serialize(mask=False, extensions=[])


class Flusher:
    """Writes the queued frames of every connection once per loop turn.

    It also encodes each publication for all connections (the first that
    needs it asks), and so knows when each was first written: it reports
    those times for the publish→deliver latency, once per event however
    many connections get it.

    Args:
        on_written: called after each turn with how many frames were
            written, and the acceptance times (ns) of the events written.
    """

    def __init__(self, on_written: Callable[[int, list[int]], None]) -> None:
        self._dirty: list[Connection] = []
        self._handle: asyncio.Handle | None = None
        self._on_written = on_written
        self._accepted: list[int] = []

    def frame(self, publication: Publication) -> tuple[bytes, str]:
        """The publication's frame for every connection, and whom it skips."""
        encoded = publication.ws_frame
        if encoded is None:
            text, skip = encode_publication(publication)
            encoded = publication.ws_frame = (ws_frame(text), skip)
            if not publication.signal:
                self._accepted.append(publication.accepted_ns)
        return encoded

    def mark(self, connection: Connection) -> None:
        """``connection`` has frames queued; write them at the end of this turn."""
        self._dirty.append(connection)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._handle = None
        dirty, self._dirty = self._dirty, []
        accepted, self._accepted = self._accepted, []
        self._on_written(sum([connection.flush() for connection in dirty]), accepted)


class Connection:
    """A live WebSocket connection: queue, hold-back for joins, and bound.

    Args:
        connection_id: its id.
        websocket: the websockets connection (for its transport and state).
        flusher: the node's flusher.
        limit_bytes: unsent bytes allowed before the connection is closed (4100).
        close: closes a connection with a code and a reason (without waiting).
        reply_bytes: the most one reply may take (at most half of ``limit_bytes``).
        drain_timeout: seconds a reply waits for room before the connection
            is closed as a slow consumer.
    """

    __slots__ = (
        "_close",
        "_drain_timeout",
        "_flusher",
        "_held",
        "_held_bytes",
        "_limit",
        "_queue",
        "_queued",
        "_reply_limit",
        "closing",
        "id",
        "typing",
        "websocket",
    )

    def __init__(
        self,
        connection_id: ConnectionId,
        websocket: ServerConnection,
        flusher: Flusher,
        limit_bytes: int,
        close: Callable[[Connection, int, str], None],
        reply_bytes: int | None = None,
        drain_timeout: float = 30.0,
    ) -> None:
        self.id = connection_id
        self.websocket = websocket
        self._flusher = flusher
        self._limit = limit_bytes
        # A reply takes at most half the bound: the other half is for the
        # events that go on arriving meanwhile.
        self._reply_limit = min(reply_bytes or limit_bytes, limit_bytes // 2)
        self._drain_timeout = drain_timeout
        self._close = close
        self._queue: list[bytes] = []
        self._queued = False
        # Live events of rooms whose join is being answered, sent after the
        # answer: (offset, frame) by room key. Their bytes count against the
        # connection's bound like queued ones (a join answered in pages to a
        # slow reader must not hold a busy room's events without end).
        self._held: dict[str, list[tuple[int, bytes]]] = {}
        self._held_bytes = 0
        self.closing = False
        # Rooms in which the client said it is typing, by key.
        self.typing: set[str] = set()

    # -- the core's side (LiveConnection) -------------------------------------

    def deliver(self, publications: Sequence[Publication]) -> None:
        if self.closing:
            return
        held, queue, own_id, frame_of = self._held, self._queue, self.id, self._flusher.frame
        for publication in publications:
            frame, skip = frame_of(publication)
            if skip == own_id:
                continue
            if held and publication.room.key in held:
                held[publication.room.key].append((publication.offset, frame))
                self._held_bytes += len(frame)
                continue
            queue.append(frame)
        if self._held_bytes and self._held_bytes + self.pending_bytes() > self._limit:
            self._drop_held()
            self.disconnect(4100, "slow consumer: fell too far behind")
            return
        if queue and not self._queued:
            self._queued = True
            self._flusher.mark(self)

    def hold(self, room_key: str) -> None:
        self._held.setdefault(room_key, [])

    def holding(self, room_key: str) -> bool:
        """Whether the room's live events are held (its join is being answered)."""
        return room_key in self._held

    def release(self, room_key: str, after: int | None) -> None:
        """Send held events after offset ``after`` (offset-0 ones too); None drops them."""
        held = self._held.pop(room_key, [])
        if not held:
            return
        self._held_bytes -= sum([len(frame) for _, frame in held])
        if after is not None and not self.closing:
            self._queue += [frame for offset, frame in held if offset == 0 or offset > after]
            if self._queue and not self._queued:
                self._queued = True
                self._flusher.mark(self)

    def _drop_held(self) -> None:
        self._held.clear()
        self._held_bytes = 0

    def joined(self, joined: Joined, id_: FrameId = None) -> None:
        """Answer a join that has no missed events to page (a backend's JoinRoom)."""
        # Rooms are shown by name: a room's name never carries its tenant.
        frame, _ = room_joined_frame(joined, joined.room.name, self._reply_limit)
        self.send(frame, id_)
        self.release(joined.room.key, joined.position.offset)

    def left(self, room: Room, id_: FrameId = None) -> None:
        # A join being answered in pages ends here: its held events are dropped.
        self.release(room.key, None)
        self.typing.discard(room.key)
        self.send({"type": "room_left", "room": room.name}, id_)

    # -- the bridge's side -----------------------------------------------------

    def send(self, frame: Mapping[str, Any], id_: FrameId = None) -> None:
        """Queue a reply or notice, in order with the events."""
        if self.closing:
            return
        if id_ is not None:
            frame = {**frame, "id": id_}
        self._queue.append(ws_frame(encode(frame)))
        if not self._queued:
            self._queued = True
            self._flusher.mark(self)

    def pending_bytes(self) -> int:
        """Bytes queued or in the transport's buffer, not yet sent."""
        transport = self.websocket.transport
        buffered = 0 if transport.is_closing() else transport.get_write_buffer_size()
        return buffered + sum([len(frame) for frame in self._queue])

    async def reply_budget(self) -> int:
        """Bytes the next reply may take, once the connection has room for them.

        While the unsent bytes and a full reply would pass the bound, wait
        for the client to read (the transport's buffer to drain). Meanwhile
        this connection's frames are not read: the client is slowed down,
        not served ahead of what it reads.

        Raises:
            SlowConsumer: no room within the drain timeout; the connection
                is being closed with 4100.
            ConnectionClosed: the connection closed meanwhile.
        """
        budget = self._reply_limit
        if self.pending_bytes() + budget <= self._limit:
            return budget
        self.flush()
        try:
            async with asyncio.timeout(self._drain_timeout):
                while self.pending_bytes() + budget > self._limit:
                    if self.closing:
                        raise SlowConsumer("connection closing")
                    # Returns once the transport's buffer is under its low
                    # water mark (websockets sets the limits, 32 KiB high).
                    await self.websocket.drain()
                    await asyncio.sleep(0)
        except TimeoutError:
            self._drop_held()
            self.disconnect(4100, "slow consumer: did not read the replies it asked for")
            raise SlowConsumer(
                f"no room for a reply within {self._drain_timeout:g} seconds"
            ) from None
        return budget

    def flush(self) -> int:
        """Write what is queued in one write.

        Returns:
            How many frames were written.
        """
        self._queued = False
        queue = self._queue
        count = len(queue)
        if not count:
            return 0
        websocket = self.websocket
        if self.closing or websocket.protocol.state is not State.OPEN:
            queue.clear()
            return 0
        transport = websocket.transport
        transport.write(queue[0] if count == 1 else b"".join(queue))
        queue.clear()
        if transport.get_write_buffer_size() > self._limit:
            self._drop_held()
            self.disconnect(4100, "slow consumer: fell too far behind")
        return count

    def disconnect(self, code: int, reason: str) -> None:
        """Close the connection (once): nothing more is queued for it."""
        if not self.closing:
            self.closing = True
            self._close(self, code, reason)
