"""PublishBatch requests read with their payloads encoded (src/roomcast/rpc/payloads.py)."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from hypothesis import given
from hypothesis import strategies as st

from roomcast.rpc.payloads import parse_publish_batch
from roomcast.v1 import realtime_pb2

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
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
    view = parse_publish_batch(data)
    assert len(view.events) == len(items)
    for read, sent in zip(view.events, items, strict=True):
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
        parse_publish_batch(data)


def test_malformed_bytes_are_refused() -> None:
    with pytest.raises(DecodeError):
        parse_publish_batch(b"\x0a\xff\xff")
