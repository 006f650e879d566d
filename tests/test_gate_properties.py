"""Properties of the gate every payload passes (src/roomcast/gate.py).

For any value, JSON or encoded: refused with the documented error naming the
limit, or accepted, and then within every limit (depth, finite numbers) and
readable by a client. The JSON and the encoded checks agree.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from hypothesis import given
from hypothesis import strategies as st
from support.nesting import depth
from support.strategies import (
    EDGE_NUMBERS,
    PROPERTY,
    Wire,
    all_finite,
    any_text,
    attempt,
    client_decodes,
    deep_objects,
    encode_struct,
    json_objects,
    json_scalars,
    json_values,
    mutations,
    payload_encodings,
    payloads,
    struct_json,
    unknown_fields,
)

from roomcast.errors import InvalidArgument
from roomcast.gate import MAX_DEPTH, check_encoded, check_json, encode_json

# The refusals check_json documents, and what each one claims of the value.
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
NOT_FINITE = "numbers must be finite"


def _floats(value: Any) -> Any:
    """A JSON value as it comes back from a Struct: every number a float."""
    pending: list[Any] = []
    root = [value]
    pending.append(root)
    while pending:
        container = pending.pop()
        keys = container.keys() if isinstance(container, dict) else range(len(container))
        for key in keys:
            item = container[key]
            if isinstance(item, dict):
                container[key] = dict(item)
                pending.append(container[key])
            elif isinstance(item, list | tuple):
                container[key] = list(item)
                pending.append(container[key])
            elif isinstance(item, int) and not isinstance(item, bool):
                container[key] = float(item)
    return root[0]


def _assert_accepted_payload(payload: bytes) -> None:
    """What an accepted payload is: a Struct within every limit, readable by clients."""
    try:
        value = struct_json(Struct.FromString(payload))
    except DecodeError:
        pytest.fail("accepted a payload the protobuf library cannot decode (too deep for clients)")
    assert depth(value) <= MAX_DEPTH, f"accepted a payload of {depth(value)} levels"
    assert all_finite(value), "accepted a payload holding NaN or an infinity"
    assert client_decodes(payload) == Struct.FromString(payload)


def _assert_names_the_limit(
    error: Exception, field: str, value: dict[str, Any], levels: int = 1
) -> None:
    """A refusal names the field and a limit the value really breaks."""
    assert isinstance(error, InvalidArgument)
    assert error.message.startswith(f"{field}: ")
    if TOO_DEEP in error.message:
        assert depth(value) + levels - 1 > MAX_DEPTH
    else:
        assert NOT_FINITE in error.message
        assert not all_finite(value)


@PROPERTY
@given(payloads(json_scalars(finite=False)), st.integers(1, 3))
def test_check_json_refuses_with_the_limit_or_the_value_is_within_it(
    value: dict[str, Any], levels: int
) -> None:
    _, error = attempt(lambda: check_json(value, field="details", levels=levels), InvalidArgument)
    if error is None:
        assert depth(value) + levels - 1 <= MAX_DEPTH
        assert all_finite(value)
    else:
        _assert_names_the_limit(error, "details", value, levels)


@PROPERTY
@given(payloads(json_scalars(finite=False)))
def test_encode_json_agrees_with_check_json_and_its_bytes_pass_check_encoded(
    value: dict[str, Any],
) -> None:
    _, checked = attempt(lambda: check_json(value), InvalidArgument)
    encoded, refused = attempt(lambda: encode_json(value), InvalidArgument)
    if refused is not None or encoded is None:
        assert checked is not None
        assert str(refused) == str(checked)
        return
    assert checked is None
    check_encoded(encoded)
    assert struct_json(Struct.FromString(encoded)) == _floats(value)
    _assert_accepted_payload(encoded)


@PROPERTY
@given(json_objects(json_scalars(ints=st.integers() | st.integers(-(2**1100), 2**1100))))
def test_encode_json_refuses_ints_beyond_a_double_with_the_documented_error(
    value: dict[str, Any],
) -> None:
    # check_json lets any int through (a Struct holds doubles): each one is
    # encoded, or refused as a number the payload cannot hold.
    encoded, error = attempt(lambda: encode_json(value), InvalidArgument)
    if encoded is None:
        assert str(error).startswith("payload: ")
        return
    check_encoded(encoded)
    _assert_accepted_payload(encoded)


@PROPERTY
@given(st.dictionaries(any_text, json_values(json_scalars(texts=any_text)), max_size=3))
def test_encode_json_refuses_text_utf8_cannot_hold_with_the_documented_error(
    value: dict[str, Any],
) -> None:
    # Keys and strings of any code point, lone surrogates included (UTF-8,
    # and so JSON text and protobuf strings, cannot hold them).
    encoded, error = attempt(lambda: encode_json(value), InvalidArgument)
    if encoded is None:
        assert str(error).startswith("payload: ")
        return
    assert struct_json(Struct.FromString(encoded)) == _floats(value)


@PROPERTY
@given(payload_encodings(finite=True))
def test_any_struct_encoding_is_refused_or_within_every_limit(
    drawn: tuple[dict[str, Any], Any, bytes],
) -> None:
    # Canonical or not (overlong tags, unknown fields): a parser accepts all
    # of these as the same Struct, so the gate must judge them all alike.
    value, _, payload = drawn
    _, error = attempt(lambda: check_encoded(payload), InvalidArgument, DecodeError)
    if error is None:
        _assert_accepted_payload(payload)
    elif isinstance(error, DecodeError):
        # Documented for bytes that are no Struct: these are one, unless
        # deeper than the library decodes at all.
        assert depth(value) > MAX_DEPTH
    else:
        _assert_names_the_limit(error, "payload", value)


@PROPERTY
@given(payloads(json_scalars(finite=False)))
def test_a_canonical_encoding_is_judged_as_its_json(value: dict[str, Any]) -> None:
    payload = encode_struct(value)
    _, json_refusal = attempt(lambda: check_json(value), InvalidArgument)
    _, encoded_refusal = attempt(lambda: check_encoded(payload), InvalidArgument, DecodeError)
    assert (json_refusal is None) == (encoded_refusal is None)
    if depth(value) > MAX_DEPTH:
        # The encoded check looks at depth first (the JSON check at whatever
        # it meets first): too deep, or too deep for the library to decode at all.
        assert isinstance(encoded_refusal, DecodeError) or TOO_DEEP in str(encoded_refusal)


def _verdict(payload: bytes) -> str:
    _, error = attempt(lambda: check_encoded(payload), InvalidArgument, DecodeError)
    if error is None:
        return "accepted"
    return "too deep" if isinstance(error, DecodeError) or TOO_DEEP in str(error) else "not finite"


@PROPERTY
@given(
    deep_objects(min_levels=MAX_DEPTH - 4, max_levels=MAX_DEPTH + 8, scalars=json_scalars()),
    unknown_fields(EDGE_NUMBERS),
)
def test_unknown_fields_change_no_verdict(value: dict[str, Any], unknown: bytes) -> None:
    # Parsers keep fields a message does not declare, and clients ignore
    # them: a payload that carries some in every object and list is the same
    # payload, however deep, and must be judged the same.
    canonical = _verdict(encode_struct(value))
    assert _verdict(encode_struct(value, Wire(unknown=unknown))) == canonical


@PROPERTY
@given(st.binary(max_size=256) | mutations(payload_encodings().map(lambda drawn: drawn[2])))
def test_any_bytes_are_refused_as_documented_or_a_payload_within_limits(data: bytes) -> None:
    _, error = attempt(lambda: check_encoded(data, field="details"), InvalidArgument, DecodeError)
    if error is None:
        _assert_accepted_payload(data)
    elif isinstance(error, InvalidArgument):
        assert error.message.startswith("details: ")


@PROPERTY
@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 4))
def test_a_number_is_accepted_exactly_when_it_is_finite(number: float, padded_tags: int) -> None:
    payload = encode_struct({"n": number}, Wire(padded_tags=padded_tags))
    if math.isfinite(number):
        check_encoded(payload)
    else:
        with pytest.raises(InvalidArgument, match=NOT_FINITE):
            check_encoded(payload)
