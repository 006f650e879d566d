"""The Redis broker's pub/sub message: events' positions, then their bodies. Pure.

The publish script (``publish.lua``) writes it, because only the
script knows the offsets; every node reads it. One event::

    v1 <offset> <epoch> <accepted_ns> <flags> <room key> LF <body>

Several events of one room published by one script run (a batch, or
concurrent publishes the broker pipelined together) travel as one message,
so a node reads one message per run, not one per event::

    v2 <count> <epoch> <room key> LF
    then per event: <offset> <accepted_ns> <flags> <body length> LF <body>

``body`` is :attr:`~roomcast.brokers.broker.Draft.body`, the encoded
``Event`` without its position; the receiving node appends ``offset`` and
``epoch`` (:func:`~roomcast.brokers.broker.position_fields`), so no node
decodes an event. ``flags`` is a decimal bit set: :data:`SIGNAL` marks an
ephemeral signal (:attr:`~roomcast.brokers.broker.Draft.signal`).

Header fields are ASCII and contain no space or line feed (room keys
cannot), so one split reads them. The version word lets a rolling upgrade
tell old messages from new ones: a node that reads only ``v1`` drops ``v2``
messages (counted as undecodable), so upgrade every node of a platform
before relying on batched delivery across nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BATCH",
    "SIGNAL",
    "VERSION",
    "Envelope",
    "EventParts",
    "decode",
    "decode_all",
    "decode_parts",
    "encode",
    "encode_all",
]

VERSION = b"v1"
BATCH = b"v2"
SIGNAL = 1
_LF = 10


# Not frozen: one is made per event received, and a frozen dataclass costs
# twice as much to create.
@dataclass(slots=True)
class Envelope:
    """An event as it travels between nodes.

    Attributes:
        room_key: :attr:`roomcast.rooms.Room.key` of its room.
        offset: its offset (0 when kept out of history).
        epoch: the room's epoch.
        accepted_ns: when the publishing node accepted it.
        body: the encoded ``Event`` without ``offset`` and ``epoch``.
        signal: an ephemeral signal, not an event.
    """

    room_key: str
    offset: int
    epoch: str
    accepted_ns: int
    body: bytes | memoryview
    signal: bool = False


def encode(envelope: Envelope) -> bytes:
    """The message for ``envelope`` (what the publish script builds)."""
    flags = SIGNAL if envelope.signal else 0
    fields = (envelope.offset, envelope.epoch, envelope.accepted_ns, flags, envelope.room_key)
    head = " ".join(map(str, fields))
    return b"".join((VERSION, b" ", head.encode(), b"\n", envelope.body))


def decode(message: bytes) -> Envelope:
    """Read a message.

    The body is a view into ``message``: joining it to the position fields
    copies it once.

    Raises:
        ValueError: not a message of this version.
    """
    end = message.find(_LF)
    if end == -1:
        raise ValueError("no header")
    fields = message[:end].split(b" ")
    if len(fields) != 6 or fields[0] != VERSION:
        raise ValueError(f"not a {VERSION.decode()} header")
    _, offset, epoch, accepted_ns, flags, room_key = fields
    return Envelope(
        room_key.decode(),
        int(offset),
        epoch.decode(),
        int(accepted_ns),
        memoryview(message)[end + 1 :],
        bool(int(flags) & SIGNAL),
    )


def encode_all(envelopes: list[Envelope]) -> bytes:
    """The message for events of one room and epoch (what the publish script builds).

    One event is a ``v1`` message; several are one ``v2`` message.
    """
    if len(envelopes) == 1:
        return encode(envelopes[0])
    first = envelopes[0]
    parts: list[bytes | memoryview] = [
        BATCH,
        f" {len(envelopes)} {first.epoch} {first.room_key}\n".encode(),
    ]
    for envelope in envelopes:
        flags = SIGNAL if envelope.signal else 0
        head = f"{envelope.offset} {envelope.accepted_ns} {flags} {len(envelope.body)}\n"
        parts += (head.encode(), envelope.body)
    return b"".join(parts)


# One event of a message: offset, accepted_ns, body, signal.
EventParts = tuple[int, int, bytes | memoryview, bool]


def decode_all(message: bytes) -> list[Envelope]:
    """Read a ``v1`` or ``v2`` message: its events, in order.

    Raises:
        ValueError: not a message of either version, a truncated one, or a
            batch of no events (so a message always holds at least one).
    """
    room_key, epoch, events = decode_parts(message)
    return [
        Envelope(room_key, offset, epoch, accepted_ns, body, signal)
        for offset, accepted_ns, body, signal in events
    ]


def decode_parts(message: bytes) -> tuple[str, str, list[EventParts]]:
    """Read a ``v1`` or ``v2`` message: its room key, its epoch and its events.

    :func:`decode_all` without an object per event: a message's events share
    its room and epoch, and the listener reads thousands a second.

    Raises:
        ValueError: as :func:`decode_all`.
    """
    if not message.startswith(BATCH + b" "):
        one = decode(message)
        return one.room_key, one.epoch, [(one.offset, one.accepted_ns, one.body, one.signal)]
    end = message.find(_LF)
    if end == -1:
        raise ValueError("no header")
    fields = message[:end].split(b" ")
    if len(fields) != 4:
        raise ValueError(f"not a {BATCH.decode()} header")
    _, count_field, epoch_field, room_field = fields
    count = int(count_field)
    if count < 1:
        raise ValueError("a batch of no events")
    view = memoryview(message)
    events: list[EventParts] = []
    start = end + 1
    for _ in range(count):
        end = message.find(_LF, start)
        if end == -1:
            raise ValueError("truncated event header")
        offset_field, accepted_field, flags_field, length_field = message[start:end].split(b" ")
        length = int(length_field)
        start, stop = end + 1, end + 1 + length
        if stop > len(message) or length < 0:
            raise ValueError("truncated event body")
        events.append(
            (
                int(offset_field),
                int(accepted_field),
                view[start:stop],
                bool(int(flags_field) & SIGNAL),
            )
        )
        start = stop
    if start != len(message):
        raise ValueError("bytes after the last event")
    return room_field.decode(), epoch_field.decode(), events
