"""The pub/sub envelope (src/roomcast/brokers/redis/envelope.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomcast.brokers.redis.envelope import Envelope, decode, decode_all, encode, encode_all


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


def test_several_events_of_a_run_are_one_v2_message() -> None:
    envelopes = [
        Envelope("acme:chat.lobby", 7, "e1", 100, b"first\nline"),
        Envelope("acme:chat.lobby", 0, "e1", 101, b"", signal=True),
        Envelope("acme:chat.lobby", 8, "e1", 102, b"third"),
    ]
    message = encode_all(envelopes)
    assert message == (
        b"v2 3 e1 acme:chat.lobby\n7 100 0 10\nfirst\nline0 101 1 0\n8 102 0 5\nthird"
    )
    decoded = decode_all(message)
    assert [(d.offset, d.accepted_ns, d.signal, bytes(d.body)) for d in decoded] == [
        (7, 100, False, b"first\nline"),
        (0, 101, True, b""),
        (8, 102, False, b"third"),
    ]
    assert {(d.room_key, d.epoch) for d in decoded} == {("acme:chat.lobby", "e1")}


def test_one_event_stays_a_v1_message() -> None:
    envelope = Envelope("chat.x", 3, "e", 9, b"body")
    assert encode_all([envelope]) == encode(envelope)
    assert decode_all(encode(envelope)) == [decode(encode(envelope))]


@given(
    events=st.lists(
        st.tuples(st.integers(0, 2**53), st.integers(0, 2**63), st.binary(max_size=50)),
        min_size=2,
        max_size=20,
    )
)
def test_any_batch_survives(events: list[tuple[int, int, bytes]]) -> None:
    envelopes = [Envelope("global.x", o, "e", a, b) for o, a, b in events]
    decoded = decode_all(encode_all(envelopes))
    assert [(d.offset, d.accepted_ns, bytes(d.body)) for d in decoded] == events


@pytest.mark.parametrize(
    "message",
    [
        b"v2 2 e room\n1 1 0 4\nbody",  # one event short
        b"v2 1 e room\n1 1 0 9\nbody",  # body cut
        b"v2 1 e room\n1 1 0 4\nbodyextra",  # bytes after the last event
        b"v2 1 e room\n1 1 0\nbody",  # header field missing
        b"v2 1 e\n1 1 0 4\nbody",
        b"v2 x e room\n",
        b"v2 0 e room\n",  # no events
        b"v2 -1 e room\n",
        b"v2 1 e room",
    ],
)
def test_broken_batches_are_refused(message: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode_all(message)
