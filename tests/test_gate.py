"""The gate every payload passes (src/roomcast/gate.py)."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from hypothesis import given, settings
from hypothesis import strategies as st
from support.nesting import depth, nested_lists, nested_objects

from roomcast.errors import InvalidArgument
from roomcast.gate import (
    MAX_DEPTH,
    SHORTEST_TOO_DEEP,
    check_encoded,
    check_json,
    depth_prefix,
    encode_json,
)
from roomcast.v1 import admin_pb2, event_pb2, realtime_pb2
from roomcast.wire import field_bytes


def nest(levels: int, *, lists: bool) -> dict[str, Any]:
    return nested_lists(levels) if lists else nested_objects(levels)


@pytest.mark.parametrize("lists", [False, True])
def test_the_limit_is_32_levels_in_json_and_encoded_alike(lists: bool) -> None:
    for levels in (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2, 60, 900):
        value = nest(levels, lists=lists)
        assert depth(value) == levels
        if levels <= MAX_DEPTH:
            encoded = encode_json(value)
            check_encoded(encoded)
            continue
        with pytest.raises(InvalidArgument, match="payload: nested deeper than 32 levels"):
            check_json(value)
        if levels < 60:  # Struct.update itself recurses; the gate's walk is what stops it
            struct = Struct()
            struct.update(value)
            with pytest.raises(InvalidArgument, match="nested deeper than 32"):
                check_encoded(struct.SerializeToString())


def test_a_value_deep_enough_to_break_struct_update_is_refused_first() -> None:
    text = '{"a":' * 1000 + "1" + "}" * 1000
    with pytest.raises(InvalidArgument, match="nested deeper"):
        encode_json(orjson.loads(text))


def test_levels_count_from_where_the_value_sits() -> None:
    position = nest(MAX_DEPTH, lists=False)
    check_json(position, levels=1)
    with pytest.raises(InvalidArgument, match="position: nested deeper"):
        check_json(position, field="position", levels=2)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_numbers_must_be_finite(number: float) -> None:
    with pytest.raises(InvalidArgument, match="finite"):
        check_json({"a": [1, {"b": number}]})
    struct = Struct()
    struct.update({"a": [1, {"b": number}]})
    with pytest.raises(InvalidArgument, match="finite"):
        check_encoded(struct.SerializeToString())


def test_values_that_are_no_json_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="not a JSON value"):
        check_json({"a": object()})
    with pytest.raises(InvalidArgument, match="keys must be strings"):
        check_json({"a": {1: 2}})


def test_nothing_shorter_than_the_shortcut_bound_is_too_deep() -> None:
    # The shortest Struct of MAX_DEPTH + 1 levels: an entry with no key whose
    # value holds empty lists in lists; objects take more per level.
    values = b""
    for _ in range(MAX_DEPTH - 1):
        values = field_bytes(1, field_bytes(6, values))  # ListValue [ [values] ]
    payload = field_bytes(1, field_bytes(2, field_bytes(6, values)))
    assert depth(MessageToDict(Struct.FromString(payload))) == MAX_DEPTH + 1
    assert len(payload) >= SHORTEST_TOO_DEEP
    with pytest.raises(InvalidArgument, match="nested deeper than 32"):
        check_encoded(payload)


def test_bytes_that_are_no_struct_raise_decode_error() -> None:
    with pytest.raises(DecodeError):
        check_encoded(b"\x0a\xff")


def test_depth_prefix_nests_content_as_many_levels_as_asked() -> None:
    content = encode_json({"n": 1})
    for levels in (1, 2, 7, 40):
        data = depth_prefix(levels, content) + content
        # Walk it as nested length-delimited fields: every level is tag 1,
        # the last tag 2 with the content.
        seen = 0
        while True:
            tag, rest = data[0], data[1:]
            length, shift, used = 0, 0, 0
            while True:
                byte = rest[used]
                length |= (byte & 0x7F) << shift
                used += 1
                shift += 7
                if byte < 0x80:
                    break
            body = rest[used : used + length]
            assert len(body) == length == len(rest) - used
            seen += 1
            if tag == 0x12:
                assert body == content
                break
            assert tag == 0x0A
            data = body
        assert seen == levels


# What a client decodes an event in: SubscribeResponse and GetHistoryResponse.
def decodes_in_every_reply(payload: bytes) -> None:
    event = event_pb2.Event(room="r", id="x").SerializeToString() + field_bytes(4, payload)
    realtime_pb2.SubscribeResponse.FromString(field_bytes(1, event))
    admin_pb2.GetHistoryResponse.FromString(field_bytes(1, event))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=60,
)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_whatever_the_gate_accepts_every_client_decodes(value: dict[str, Any]) -> None:
    finite = all(not isinstance(leaf, float) or math.isfinite(leaf) for leaf in _leaves(value))
    deep = depth(value) > MAX_DEPTH
    if deep or not finite:
        # Refused, for a documented reason it has.
        reasons = [why for why, holds in (("nested deeper", deep), ("finite", not finite)) if holds]
        with pytest.raises(InvalidArgument, match="|".join(reasons)):
            encode_json(value)
        return
    encoded = encode_json(value)
    check_encoded(encoded)
    decodes_in_every_reply(encoded)


def _leaves(value: Any) -> list[Any]:
    leaves, pending = [], [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict | list):
            pending += item.values() if isinstance(item, dict) else item
        else:
            leaves.append(item)
    return leaves


@settings(max_examples=200)
@given(st.integers(1, 40), st.sampled_from(["objects", "lists"]))
def test_the_limit_is_exact_for_any_depth(levels: int, shape: str) -> None:
    value = nest(levels, lists=shape == "lists")
    accepted = True
    try:
        check_encoded(encode_json(value))
    except InvalidArgument:
        accepted = False
    assert accepted == (levels <= MAX_DEPTH)
