"""Settings and strategies shared by the property tests (``tests/**/test_*_properties.py``).

Every property test is decorated with :data:`PROPERTY`:

- ``ROOMCAST_PROPERTY_EXAMPLES`` (default 300) sets the examples per test;
- under CI (``CI`` set, as GitHub Actions and GitLab set it) the search is
  derandomized: every run tries the same examples, so a red build is not a
  matter of luck and reproduces with ``CI=1`` on a laptop. Locally each run
  explores new examples (more coverage over time) and keeps failing ones in
  ``.hypothesis/`` (git-ignored); a failure prints the ``@reproduce_failure``
  blob that replays it, and ``--hypothesis-seed`` replays a whole run.
- no deadline (a 2-core CI runner is slow now and then), and no "explain"
  phase (it re-runs a failure many times only to comment on it).

JSON values and ``Struct`` encodings are built and measured without recursion
where they can be deep (the gate's rule: src/roomcast/gate.py; depth as
support/nesting.py measures it).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.struct_pb2 import ListValue, Struct
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from roomcast.v1 import event_pb2, realtime_pb2
from roomcast.wire import field_bytes, field_varint, varint

__all__ = [
    "CANONICAL",
    "CI",
    "EDGE_NUMBERS",
    "EXAMPLES",
    "PROPERTY",
    "Wire",
    "all_finite",
    "any_text",
    "attempt",
    "client_decodes",
    "deep_objects",
    "encode_struct",
    "json_objects",
    "json_scalars",
    "json_values",
    "mutations",
    "numbers_of",
    "payload_encodings",
    "payloads",
    "struct_json",
    "unknown_fields",
    "wires",
]

T = TypeVar("T")

CI = bool(os.environ.get("CI"))
EXAMPLES = int(os.environ.get("ROOMCAST_PROPERTY_EXAMPLES", "300"))

PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- JSON values ---------------------------------------------------------------------

#: Text of any code point, lone surrogates included (hypothesis leaves them out by default).
any_text = st.lists(
    st.characters(codec=None, categories=None) | st.sampled_from(["\ud800", "\udfff", "\ud83d"]),
    max_size=20,
).map("".join)
_KEYS = st.text(max_size=8)


def json_scalars(
    *,
    finite: bool = True,
    ints: st.SearchStrategy[int] | None = None,
    texts: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Any]:
    """None, booleans, numbers and strings.

    Args:
        finite: leave NaN and the infinities out.
        ints: the integers (default: what orjson reads, 64 bits).
        texts: the strings (default: any text without surrogates).
    """
    return (
        st.none()
        | st.booleans()
        | (ints if ints is not None else st.integers(-(2**63), 2**64 - 1))
        | st.floats(allow_nan=not finite, allow_infinity=not finite)
        | (texts if texts is not None else st.text(max_size=20))
    )


def json_values(
    scalars: st.SearchStrategy[Any] | None = None, *, max_leaves: int = 12
) -> st.SearchStrategy[Any]:
    """Any JSON value (objects and lists of any shape, a few levels deep)."""
    return st.recursive(
        scalars if scalars is not None else json_scalars(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
        max_leaves=max_leaves,
    )


def json_objects(scalars: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """A JSON object of any values."""
    return st.dictionaries(_KEYS, json_values(scalars, max_leaves=6), max_size=4)


_KINDS = st.lists(st.sampled_from(["object", "list"]), min_size=1, max_size=4)


def _chain(
    levels: int, kinds: list[str], key: str, bottom: Any, beside: dict[int, Any]
) -> dict[str, Any]:
    value: Any = bottom
    for level in range(levels, 1, -1):  # value is what sits inside the container of this level
        if kinds[level % len(kinds)] == "list":
            value = [value, beside[level]] if level in beside else [value]
        else:
            value = {key: value, **({"": beside[level]} if level in beside else {})}
    return {key: value, **({"": beside[1]} if 1 in beside else {})}


def deep_objects(
    max_levels: int = 200,
    scalars: st.SearchStrategy[Any] | None = None,
    *,
    min_levels: int = 1,
) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects nested ``min_levels`` to ``max_levels`` levels, built without recursion.

    A chain of objects and lists (the kinds repeat in a drawn pattern), with
    a value at its bottom and scalars beside it at some levels.
    """
    leaves = scalars if scalars is not None else json_scalars()
    return st.builds(
        _chain,
        st.integers(min_levels, max_levels),
        _KINDS,
        _KEYS,
        leaves | st.just({}) | st.just([]),
        st.dictionaries(st.integers(1, max_levels), leaves, max_size=2),
    )


def payloads(scalars: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """Payload objects: of any shape, or deep (to 200 levels)."""
    return json_objects(scalars) | deep_objects(scalars=scalars)


def numbers_of(value: Any) -> list[float | int]:
    """Every number in a JSON value (booleans are no numbers), found without recursion."""
    found: list[float | int] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            found.append(item)
    return found


# -- Struct encodings, framed by hand ---------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """How :func:`encode_struct` frames a value: any way a conforming parser must accept.

    Attributes:
        padded_tags: extra bytes in each ``number_value`` tag: an overlong
            varint (``0x91 0x80 ... 0x00``), which parsers accept up to five bytes.
        unknown: fields no ``Struct`` or ``ListValue`` declares, appended to
            each container of level ``unknown_from`` and deeper (parsers keep
            unknown fields).
        unknown_from: the first level that carries ``unknown``.
    """

    padded_tags: int = 0
    unknown: bytes = b""
    unknown_from: int = 1
    number_tag: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        tag = (
            b"\x11"
            if not self.padded_tags
            else b"\x91" + b"\x80" * (self.padded_tags - 1) + b"\x00"
        )
        object.__setattr__(self, "number_tag", tag)

    def extra(self, level: int) -> bytes:
        """The unknown fields a container of ``level`` carries."""
        return self.unknown if level >= self.unknown_from else b""


CANONICAL = Wire()

# Field numbers at the edges of what protobuf allows (2**29 - 1 is the largest,
# 19000-19999 are reserved for the implementation) and a few ordinary ones.
EDGE_NUMBERS = st.sampled_from([2, 3, 7, 15, 16, 2047, 2048, 19000, 19999, 2**29 - 1])
_NUMBERS = EDGE_NUMBERS | st.integers(2, 2**29 - 1)


def _unknown_field(number: int, kind: str, number_value: int, data: bytes) -> bytes:
    if kind == "varint":
        return field_varint(number, number_value)
    if kind == "bytes":
        return field_bytes(number, data)
    wire_type, size = (1, 8) if kind == "fixed64" else (5, 4)
    return varint(number << 3 | wire_type) + (data + bytes(size))[:size]


def unknown_fields(
    numbers: st.SearchStrategy[int] = _NUMBERS,
) -> st.SearchStrategy[bytes]:
    """Fields a ``Struct`` or ``ListValue`` does not declare (any wire type but groups)."""
    return st.lists(
        st.builds(
            _unknown_field,
            numbers,
            st.sampled_from(["varint", "fixed64", "bytes", "fixed32"]),
            st.integers(0, 2**64 - 1),
            st.binary(max_size=8),
        ),
        min_size=1,
        max_size=3,
    ).map(b"".join)


wires = st.builds(
    Wire,
    padded_tags=st.integers(0, 4),
    unknown=st.just(b"") | unknown_fields(),
    unknown_from=st.integers(1, 64),
)


def _value(item: Any, encoded: Mapping[tuple[int, int], bytes], level: int, wire: Wire) -> bytes:
    """``google.protobuf.Value`` of a JSON value (containers already encoded, at ``level``)."""
    if item is None:
        return field_varint(1, 0)
    if isinstance(item, bool):
        return field_varint(4, int(item))
    if isinstance(item, int | float):
        return wire.number_tag + struct.pack("<d", float(item))
    if isinstance(item, str):
        return field_bytes(3, item.encode("utf-8"))
    container = encoded[(id(item), level)]
    return field_bytes(5 if isinstance(item, Mapping) else 6, container)


def encode_struct(value: Mapping[str, Any], wire: Wire = CANONICAL) -> bytes:
    """The ``Struct`` encoding of a JSON object, framed by hand and without recursion.

    The protobuf library refuses to build messages deeper than it parses, and
    ``Struct.update`` recurses: deep payloads are built here. The payload
    object is level 1; a container inside a container of level n is of level n + 1.
    """
    encoded: dict[tuple[int, int], bytes] = {}
    pending: list[tuple[Any, int, bool]] = [(value, 1, False)]
    while pending:
        node, level, children_done = pending.pop()
        children = list(node.values()) if isinstance(node, Mapping) else list(node)
        if not children_done:
            pending.append((node, level, True))
            pending.extend(
                (child, level + 1, False)
                for child in children
                if isinstance(child, Mapping | list | tuple)
            )
            continue
        if isinstance(node, Mapping):
            body = b"".join(
                field_bytes(
                    1,
                    field_bytes(1, key.encode())
                    + field_bytes(2, _value(v, encoded, level + 1, wire)),
                )
                for key, v in node.items()
            )
        else:
            body = b"".join(field_bytes(1, _value(v, encoded, level + 1, wire)) for v in node)
        encoded[(id(node), level)] = body + wire.extra(level)
    return encoded[(id(value), 1)]


def payload_encodings(
    *, finite: bool = False, wire: st.SearchStrategy[Wire] = wires
) -> st.SearchStrategy[tuple[dict[str, Any], Wire, bytes]]:
    """A payload, a way to frame it, and its encoding.

    Args:
        finite: leave NaN and the infinities out of the numbers.
        wire: the ways to frame it.
    """
    return st.tuples(payloads(json_scalars(finite=finite)), wire).map(
        lambda drawn: (drawn[0], drawn[1], encode_struct(drawn[0], drawn[1]))
    )


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, byte in edits:
        if not buffer and kind != 1:
            continue
        at = where % (len(buffer) + (kind == 1))
        if kind == 0:
            buffer[at] = byte
        elif kind == 1:
            buffer.insert(at, byte)
        else:
            del buffer[at]
    return bytes(buffer)


_EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4
)


def mutations(data: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """``data`` with one to four bytes overwritten, inserted or deleted."""
    return st.builds(_mutate, data, _EDITS)


def client_decodes(payload: bytes) -> Struct:
    """A payload as a client decodes it: inside an Event inside a SubscribeResponse.

    Raises:
        DecodeError: the client's parser cannot (too deep for it, say).
    """
    event = event_pb2.Event(room="global.x", event="e").SerializeToString()
    event += field_bytes(event_pb2.Event.DESCRIPTOR.fields_by_name["payload"].number, payload)
    response = realtime_pb2.SubscribeResponse.FromString(field_bytes(1, event))
    return response.events[0].payload


def struct_json(message: Struct) -> dict[str, Any]:
    """A decoded ``Struct`` as a JSON object (numbers as floats), without recursion."""
    root: dict[str, Any] = {}
    pending: list[tuple[Struct | ListValue, dict[str, Any] | list[Any]]] = [(message, root)]
    while pending:
        source, target = pending.pop()
        items: list[tuple[Any, Any]] = (
            list(source.fields.items())
            if isinstance(source, Struct)
            else list(enumerate(source.values))
        )
        for key, item in items:
            kind = item.WhichOneof("kind")
            converted: Any
            if kind == "struct_value":
                converted = {}
                pending.append((item.struct_value, converted))
            elif kind == "list_value":
                converted = []
                pending.append((item.list_value, converted))
            elif kind == "number_value":
                converted = item.number_value
            elif kind == "string_value":
                converted = item.string_value
            elif kind == "bool_value":
                converted = item.bool_value
            else:
                converted = None
            if isinstance(target, dict):
                target[key] = converted
            else:
                target.append(converted)
    return root


def all_finite(value: Any) -> bool:
    """Whether every number in a JSON value is finite."""
    return all(math.isfinite(n) for n in numbers_of(value))


def attempt(
    call: Callable[[], T], *refusals: type[Exception]
) -> tuple[T, None] | tuple[None, Exception]:
    """``call``'s result, or the refusal it raised (of the ``refusals``; others escape).

    Properties say "accepted and then ..., or refused with ...": this keeps
    both branches in plain code, and lets any other exception fail the test.
    """
    try:
        return call(), None
    except refusals as error:
        return None, error
