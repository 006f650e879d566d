"""Publish and PublishBatch requests read through the gate (src/roomcast/rpc/payloads.py)."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from hypothesis import given
from hypothesis import strategies as st
from support.nesting import nested_lists, nested_objects

from roomcast.rpc.payloads import read_publish, read_publish_batch
from roomcast.v1 import event_pb2, realtime_pb2
from roomcast.wire import field_bytes

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
requests = st.builds(
    lambda room, event, payload, tenant, skip, key: _request(
        room, event, payload, tenant, skip, key
    ),
    st.text(max_size=30),
    st.text(max_size=30),
    st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    st.text(max_size=10),
    st.booleans(),
    st.text(max_size=10),
)


def _request(
    room: str, event: str, payload: dict[str, object], tenant: str, skip: bool, key: str
) -> realtime_pb2.PublishRequest:
    request = realtime_pb2.PublishRequest(
        room=room, event=event, tenant_id=tenant, skip_history=skip, idempotency_key=key
    )
    request.payload.update(payload)
    return request


@given(st.lists(requests, max_size=5))
def test_the_view_reads_every_field_and_the_payload_as_sent(
    items: list[realtime_pb2.PublishRequest],
) -> None:
    data = realtime_pb2.PublishBatchRequest(events=items).SerializeToString()
    batch = read_publish_batch(data)
    assert not batch.refused
    assert len(batch.events) == len(items)
    for read, sent in zip(batch.events, items, strict=True):
        assert (read.room, read.event, read.tenant_id) == (sent.room, sent.event, sent.tenant_id)
        assert (read.skip_history, read.idempotency_key) == (
            sent.skip_history,
            sent.idempotency_key,
        )
        assert isinstance(read.payload, bytes)
        assert Struct.FromString(read.payload) == sent.payload


def test_a_payload_that_is_no_struct_is_refused() -> None:
    # A Struct whose key is not UTF-8: a bytes field would take it, the public message does not.
    bad_struct = b"\x0a\x06\x0a\x02\xff\xfe\x12\x00"
    item = b"\x0a\x06global" + b"\x1a" + bytes((len(bad_struct),)) + bad_struct
    data = b"\x0a" + bytes((len(item),)) + item
    with pytest.raises(DecodeError):
        read_publish_batch(data)


def test_malformed_bytes_are_refused() -> None:
    with pytest.raises(DecodeError):
        read_publish_batch(b"\x0a\xff\xff")


# -- the gate on the gRPC paths -------------------------------------------------


def _batch(*payloads: dict[str, object]) -> bytes:
    request = realtime_pb2.PublishBatchRequest()
    for payload in payloads:
        item = request.events.add(room="global.x", event="e")
        item.payload.update(payload)
    return request.SerializeToString()


SHAPES = [
    ("objects", nested_objects),
    ("lists", nested_lists),
    ("empty lists", lambda levels: nested_lists(levels, [])),
    ("objects in lists", lambda levels: {"a": [nested_objects(levels - 2)]}),
]


@pytest.mark.parametrize(("shape", "make"), SHAPES)
@pytest.mark.parametrize("levels", [20, 21, 22, 31, 32, 33, 34, 40])
def test_batch_items_deeper_than_32_levels_are_refused_alone(
    shape: str, make: object, levels: int
) -> None:
    payload = make(levels)  # type: ignore[operator]
    batch = read_publish_batch(_batch({"ok": True}, payload, {"ok": False}))
    assert len(batch.events) == 3
    if levels <= 32:
        assert batch.refused == {}
    else:
        assert list(batch.refused) == [1]
        assert batch.refused[1].message.startswith("payload: nested deeper than 32 levels")


def test_a_deep_unary_publish_is_refused_naming_the_limit() -> None:
    request = realtime_pb2.PublishRequest(room="global.x", event="e")
    request.payload.update(nested_objects(33))
    checked = read_publish(request.SerializeToString())
    assert checked.refused[0].message.startswith("payload: nested deeper than 32 levels")
    request.payload.Clear()
    request.payload.update(nested_objects(32))
    checked = read_publish(request.SerializeToString())
    assert not checked.refused
    assert Struct.FromString(checked.events[0].payload) == request.payload


def test_numbers_that_are_not_finite_are_refused() -> None:
    batch = read_publish_batch(
        _batch({"n": 1.5}, {"n": float("nan")}, {"n": [float("-inf")]}, {"s": "\x11abcdef\xf0\x7f"})
    )
    assert sorted(batch.refused) == [1, 2]
    assert "finite" in batch.refused[1].message


def _group_nest(levels: int) -> bytes:
    """A Struct holding an unknown field: groups nested ``levels`` deep (field 7)."""
    return b"\x3b" * levels + b"\x3c" * levels


def test_unknown_groups_nested_past_what_clients_decode_are_refused() -> None:
    # Unknown fields are kept and forwarded; nested groups count towards the
    # parser's 100 levels in every client, so the gate counts them too, and
    # keeps a level to spare.
    for levels in range(90, 101):
        item = b"\x0a\x08global.x\x12\x01e" + field_bytes(3, _group_nest(levels))
        batch = read_publish_batch(field_bytes(1, item))
        event = event_pb2.Event(room="r").SerializeToString() + field_bytes(4, _group_nest(levels))
        try:
            realtime_pb2.SubscribeResponse.FromString(field_bytes(1, event))
            decodes_with_a_level_to_spare = levels < 98
        except DecodeError:
            decodes_with_a_level_to_spare = False
        assert bool(batch.refused) is not decodes_with_a_level_to_spare, levels
