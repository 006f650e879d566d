"""The pub/sub envelope (src/roomcast/brokers/redis_envelope.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomcast.brokers.redis_envelope import Envelope, decode, encode


def test_a_message_is_a_header_line_then_the_body() -> None:
    envelope = Envelope("acme:chat.lobby", 7, "a1b2c3d4", 1_700_000_000_123_456_789, b"\x0a\x01x")
    message = encode(envelope)
    assert message == b"v1 7 a1b2c3d4 1700000000123456789 0 acme:chat.lobby\n\x0a\x01x"
    decoded = decode(message)
    assert (decoded.room_key, decoded.offset, decoded.epoch, decoded.accepted_ns) == (
        "acme:chat.lobby",
        7,
        "a1b2c3d4",
        1_700_000_000_123_456_789,
    )
    assert bytes(decoded.body) == b"\x0a\x01x"
    assert not decoded.signal


def test_signals_are_flagged() -> None:
    message = encode(Envelope("chat.x", 0, "e", 1, b"", signal=True))
    assert message == b"v1 0 e 1 1 chat.x\n"
    assert decode(message).signal


@given(
    offset=st.integers(0, 2**53),
    accepted_ns=st.integers(0, 2**63),
    body=st.binary(max_size=200),
)
def test_any_body_survives(offset: int, accepted_ns: int, body: bytes) -> None:
    # Bodies are protobuf: any bytes, line feeds and spaces included.
    decoded = decode(encode(Envelope("global.x", offset, "e", accepted_ns, body)))
    assert (decoded.offset, decoded.accepted_ns, bytes(decoded.body)) == (offset, accepted_ns, body)


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"no header line",
        b"v2 1 e 1 0 room\nbody",
        b"v1 1 e 1 room\nbody",
        b"v1 x e 1 0 room\n",
        b"v1 1 e 1 s room\n",
    ],
)
def test_other_messages_are_refused(message: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode(message)
