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
can neither grow memory nor delay the other members.

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
from ..presence import ConnectionId
from ..rooms import Room
from ..sessions import Joined
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
    """

    __slots__ = (
        "_close",
        "_flusher",
        "_held",
        "_limit",
        "_queue",
        "_queued",
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
    ) -> None:
        self.id = connection_id
        self.websocket = websocket
        self._flusher = flusher
        self._limit = limit_bytes
        self._close = close
        self._queue: list[bytes] = []
        self._queued = False
        # Live events of rooms whose join is being answered, sent after the answer.
        self._held: dict[str, list[Publication]] = {}
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
                held[publication.room.key].append(publication)
                continue
            queue.append(frame)
        if queue and not self._queued:
            self._queued = True
            self._flusher.mark(self)

    def hold(self, room_key: str) -> None:
        self._held.setdefault(room_key, [])

    def release(self, room_key: str, after: int | None) -> None:
        """Send held events after offset ``after`` (offset-0 ones too); None drops them."""
        held = self._held.pop(room_key, [])
        if after is not None and held:
            self.deliver([p for p in held if p.offset == 0 or p.offset > after])

    def joined(self, joined: Joined, id_: FrameId = None) -> None:
        # Rooms are shown by name: a room's name never carries its tenant.
        self.send(room_joined_frame(joined, joined.room.name), id_)
        self.release(joined.room.key, joined.position.offset)

    def left(self, room: Room, id_: FrameId = None) -> None:
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
            self._held.clear()
            self.disconnect(4100, "slow consumer: fell too far behind")
        return count

    def disconnect(self, code: int, reason: str) -> None:
        """Close the connection (once): nothing more is queued for it."""
        if not self.closing:
            self.closing = True
            self._close(self, code, reason)
