"""Protocol Buffers wire format for every field roomcast frames by hand.

The protobuf library encodes every message roomcast sends; this module only
frames already-encoded parts so an event is encoded once and assembled by
concatenation. That is valid by the encoding spec: "when a message is
serialized ... a parser must accept fields in any order", repeated fields
append, and for scalar fields the last value wins.
"""

from __future__ import annotations

import functools

__all__ = [
    "EVENTS_TAG",
    "EVENT_ID",
    "EVENT_PAYLOAD",
    "EVENT_TIME",
    "OFFSET_TAG",
    "ONE_BYTE",
    "epoch_field",
    "field_bytes",
    "field_string",
    "field_varint",
    "len_tag",
    "offset_field",
    "position_fields",
    "subscribe_frame",
    "time_field",
    "varint",
    "varint_tag",
]

# Wire types (encoding spec, "Message Structure").
_VARINT = 0
_LEN = 2


# The varints of 0 to 127, one byte each: hot paths index it instead of calling varint.
ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def varint(value: int) -> bytes:
    """Base 128 varint: seven bits a byte, least significant group first."""
    if value < 0x80:
        return ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    # Offsets of busy rooms pass two million within hours, and a loop costs
    # a hot path several times what these unrolled cases do.
    if value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    if value < 0x10000000:
        return bytes(
            (
                (value & 0x7F) | 0x80,
                ((value >> 7) & 0x7F) | 0x80,
                ((value >> 14) & 0x7F) | 0x80,
                value >> 21,
            )
        )
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.cache
def _tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def len_tag(number: int) -> bytes:
    """The tag of length-delimited field ``number``: hot paths keep it as a constant."""
    return _tag(number, _LEN)


def varint_tag(number: int) -> bytes:
    """The tag of integer field ``number``: hot paths keep it as a constant."""
    return _tag(number, _VARINT)


def field_varint(number: int, value: int) -> bytes:
    """An integer field (int32/64, uint32/64, bool)."""
    return _tag(number, _VARINT) + varint(value)


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field: bytes, or an embedded message's encoding."""
    return _tag(number, _LEN) + varint(len(data)) + data


def field_string(number: int, text: str) -> bytes:
    """A string field."""
    return field_bytes(number, text.encode())


# The fields brokers append to a stored event, and the Subscribe frame that
# wraps one (event.proto, realtime.proto).
OFFSET_TAG = varint_tag(5)  # Event.offset
EVENTS_TAG = len_tag(1)  # SubscribeResponse.events


def offset_field(offset: int) -> bytes:
    """``Event.offset``, to append to a draft's body (nothing for offset 0)."""
    return OFFSET_TAG + varint(offset) if offset else b""


@functools.lru_cache(maxsize=1024)
def epoch_field(epoch: str) -> bytes:
    """``Event.epoch``, to append to a draft's body.

    Cached: a room's epoch rarely changes, and every event delivered from
    Redis appends it.
    """
    return field_string(6, epoch)


def position_fields(offset: int, epoch: str) -> bytes:
    """``Event.offset`` and ``Event.epoch``, to append to a draft's body."""
    return offset_field(offset) + epoch_field(epoch)


def subscribe_frame(data: bytes) -> bytes:
    """A ``SubscribeResponse`` carrying the one encoded ``Event`` ``data``.

    Repeated fields append when encodings are concatenated, so joining
    frames yields one response carrying all their events.
    """
    return field_bytes(1, data)  # SubscribeResponse.events


# Event fields (proto/roomcast/v1/event.proto) the publisher frames.
EVENT_ID = 1
EVENT_PAYLOAD = 4
EVENT_TIME = 7


def time_field(accepted_ns: int) -> bytes:
    """The encoded ``Event.time`` field of a moment (nanoseconds)."""
    seconds, nanos = divmod(accepted_ns, 1_000_000_000)
    return field_bytes(EVENT_TIME, field_varint(1, seconds) + field_varint(2, nanos))
