"""The Redis broker's pub/sub message: an event's position, then its body. Pure.

The publish script (``redis_publish.lua``) writes it, because only the
script knows the offset; every node reads it::

    v1 <offset> <epoch> <accepted_ns> <flags> <room key> LF <body>

``body`` is :attr:`~roomcast.brokers.broker.Draft.body`, the encoded
``Event`` without its position; the receiving node appends ``offset`` and
``epoch`` (:func:`~roomcast.brokers.broker.position_fields`), so no node
decodes an event. ``flags`` is a decimal bit set: :data:`SIGNAL` marks an
ephemeral signal (:attr:`~roomcast.brokers.broker.Draft.signal`).

Header fields are ASCII and contain no space or line feed (room keys
cannot), so one split reads them. The version word lets a rolling upgrade
tell old messages from new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SIGNAL", "VERSION", "Envelope", "decode", "encode"]

VERSION = b"v1"
SIGNAL = 1
_LF = 10


@dataclass(frozen=True, slots=True)
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
