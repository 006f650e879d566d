"""Hand-framed protobuf fields (src/roomcast/wire.py) against the protobuf library."""

from __future__ import annotations

from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import given
from hypothesis import strategies as st

from roomcast.v1 import event_pb2
from roomcast.wire import field_bytes, field_string, field_varint, len_tag, varint, varint_tag


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_is_the_protobuf_encoding(value: int) -> None:
    assert varint(value) == _VarintBytes(value)


def test_varint_at_every_length_boundary() -> None:
    for bits in range(0, 64, 7):
        for value in (2**bits - 1, 2**bits, 2**bits + 1):
            assert varint(value) == _VarintBytes(value), value


@given(
    offset=st.integers(min_value=0, max_value=2**64 - 1),
    epoch=st.text(max_size=40),
    room=st.text(max_size=300),
)
def test_fields_concatenate_into_a_message(offset: int, epoch: str, room: str) -> None:
    encoded = field_varint(5, offset) + field_string(6, epoch) + field_bytes(2, room.encode())
    assert event_pb2.Event.FromString(encoded) == event_pb2.Event(
        offset=offset, epoch=epoch, room=room
    )


def test_tags_carry_field_number_and_wire_type() -> None:
    assert len_tag(1) == b"\x0a"
    assert varint_tag(5) == b"\x28"
    assert len_tag(16) == b"\x82\x01"  # numbers past 15 take a second byte
