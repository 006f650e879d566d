"""Properties of Publish and PublishBatch requests read through the gate (rpc/payloads.py).

Whatever the bytes, a request is refused whole (DecodeError: the servicer
answers INVALID_ARGUMENT) or read: every event is then in ``events`` with
its fields as sent, and it is refused by index exactly when its payload
breaks a limit. The fast parse (shallow batches) and the exact one (batches
with a deep payload) must agree item by item.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from hypothesis import given
from hypothesis import strategies as st
from support.nesting import depth
from support.strategies import (
    PROPERTY,
    Wire,
    all_finite,
    attempt,
    client_decodes,
    encode_struct,
    json_objects,
    mutations,
    payload_encodings,
    struct_json,
)

from roomcast.errors import InvalidArgument
from roomcast.gate import MAX_DEPTH
from roomcast.rpc.payloads import CheckedBatch, read_publish, read_publish_batch
from roomcast.v1 import realtime_pb2
from roomcast.wire import field_bytes

_PAYLOAD = realtime_pb2.PublishRequest.DESCRIPTOR.fields_by_name["payload"].number


@dataclass(frozen=True)
class Item:
    """One PublishRequest as sent: its fields, its payload's value and encoding."""

    request: realtime_pb2.PublishRequest
    value: dict[str, Any]
    payload: bytes

    @property
    def data(self) -> bytes:
        return self.request.SerializeToString() + field_bytes(_PAYLOAD, self.payload)

    @property
    def within_limits(self) -> bool:
        return depth(self.value) <= MAX_DEPTH and all_finite(self.value)


def _item(
    fields: tuple[str, str, str, bool, str], drawn: tuple[dict[str, Any], Wire, bytes]
) -> Item:
    room, event, tenant, skip, key = fields
    request = realtime_pb2.PublishRequest(
        room=room, event=event, tenant_id=tenant, skip_history=skip, idempotency_key=key
    )
    return Item(request, drawn[0], drawn[2])


items = st.builds(
    _item,
    st.tuples(
        st.text(max_size=12),
        st.text(max_size=12),
        st.text(max_size=8),
        st.booleans(),
        st.text(max_size=8),
    ),
    payload_encodings(),
)


def _batch(requests: list[Item]) -> bytes:
    return b"".join(field_bytes(1, item.data) for item in requests)


def _assert_gated(batch: CheckedBatch) -> None:
    """Every event is refused with the documented error, or its payload is within limits."""
    assert set(batch.refused) <= set(range(len(batch.events)))
    for index, event in enumerate(batch.events):
        error = batch.refused.get(index)
        if error is not None:
            assert isinstance(error, InvalidArgument)
            assert error.message.startswith("payload: ")
            continue
        decoded, undecodable = attempt(partial(Struct.FromString, event.payload), DecodeError)
        assert undecodable is None, f"event {index}: accepted a payload clients cannot decode"
        assert decoded is not None
        value = struct_json(decoded)
        assert depth(value) <= MAX_DEPTH, f"event {index}: accepted {depth(value)} levels"
        assert all_finite(value), f"event {index}: accepted NaN or an infinity"
        client_decodes(event.payload)


@PROPERTY
@given(st.lists(items, max_size=3))
def test_a_batch_is_read_as_sent_and_refuses_exactly_the_payloads_over_a_limit(
    requests: list[Item],
) -> None:
    batch = read_publish_batch(_batch(requests))
    assert len(batch.events) == len(requests)
    for index, (read, sent) in enumerate(zip(batch.events, requests, strict=True)):
        assert (read.room, read.event, read.tenant_id) == (
            sent.request.room,
            sent.request.event,
            sent.request.tenant_id,
        )
        assert (read.skip_history, read.idempotency_key) == (
            sent.request.skip_history,
            sent.request.idempotency_key,
        )
        assert read.payload == sent.payload  # the bytes the client sent, not re-encoded
        assert (index not in batch.refused) == sent.within_limits, (
            f"event {index}: depth {depth(sent.value)}, finite {all_finite(sent.value)}, "
            f"refused: {batch.refused.get(index)}"
        )
    _assert_gated(batch)


@PROPERTY
@given(st.lists(items, min_size=1, max_size=3))
def test_an_item_is_judged_alike_alone_and_in_any_batch(requests: list[Item]) -> None:
    # Alone, a shallow item takes the fast parse; beside a deep one, the
    # exact one. The verdicts, and their reasons, must not depend on that.
    together = read_publish_batch(_batch(requests))
    for index, item in enumerate(requests):
        alone = read_publish(item.data)
        assert len(alone.events) == 1
        assert alone.events[0].payload == together.events[index].payload
        assert str(alone.refused.get(0)) == str(together.refused.get(index))


any_bytes = st.binary(max_size=200) | mutations(st.lists(items, max_size=2).map(_batch))


@PROPERTY
@given(any_bytes)
def test_any_bytes_are_refused_whole_or_read_through_the_gate(data: bytes) -> None:
    unary, _ = attempt(lambda: read_publish(data), DecodeError)  # Publish: a batch of one
    if unary is not None:
        assert len(unary.events) == 1
        _assert_gated(unary)
    batch, refused = attempt(lambda: read_publish_batch(data), DecodeError)
    public, undecodable = attempt(
        lambda: realtime_pb2.PublishBatchRequest.FromString(data), DecodeError
    )
    if batch is None:
        # What the reader refuses whole, the protobuf library refuses too.
        assert undecodable is not None, f"refused a valid PublishBatchRequest: {refused}"
        return
    _assert_gated(batch)
    if public is None:
        # Only payloads too deep for the library may make it refuse what the reader read.
        assert batch.refused, "read a request the protobuf library refuses, refusing no event"
        return
    assert len(batch.events) == len(public.events)
    for read, sent in zip(batch.events, public.events, strict=True):
        assert (read.room, read.event, read.tenant_id) == (sent.room, sent.event, sent.tenant_id)
        assert (read.skip_history, read.idempotency_key) == (
            sent.skip_history,
            sent.idempotency_key,
        )


@PROPERTY
@given(items, json_objects())
def test_a_payload_sent_in_two_parts_publishes_the_last_part_through_the_gate(
    item: Item, more: dict[str, Any]
) -> None:
    # Encoding spec: "Concatenating two serialized messages results in
    # merging"; protobuf merges a message field that occurs twice. The
    # reader keeps the last part instead (documented in rpc/payloads.py:
    # finding the others costs 40 % of reading a batch, and no serializer
    # splits a field). What is published is that part, through the gate:
    # a payload every client decodes.
    first = item.data
    last = encode_struct(more)
    second = realtime_pb2.PublishRequest(event="second").SerializeToString()
    second += field_bytes(_PAYLOAD, last)
    checked = read_publish(first + second)
    assert checked.events[0].event == "second"
    if checked.refused:
        assert not (item.within_limits and depth(more) <= MAX_DEPTH and all_finite(more))
        return
    assert checked.events[0].payload == last
    assert struct_json(client_decodes(last)) == struct_json(Struct.FromString(last))
