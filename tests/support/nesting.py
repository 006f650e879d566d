"""JSON values nested to a given depth, and their depth (the gate's rule: src/roomcast/gate.py).

The payload object is level 1; each object or list inside a value adds one.
Built and measured without recursion: tests go far past Python's recursion limit.
"""

from __future__ import annotations

from typing import Any

__all__ = ["depth", "encoded_lists", "encoded_objects", "nested_lists", "nested_objects"]


def nested_objects(levels: int) -> dict[str, Any]:
    """A payload of ``levels`` levels of objects, a number at the bottom."""
    value: dict[str, Any] = {"n": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_lists(levels: int, bottom: list[Any] | None = None) -> dict[str, Any]:
    """A payload object holding lists down to level ``levels`` (``[1]``, or ``bottom``, deepest)."""
    value: list[Any] = [1] if bottom is None else bottom
    for _ in range(levels - 2):
        value = [value]
    return {"a": value}


def depth(value: Any) -> int:
    """The nesting of a JSON value: an object or a list is one level more than its items."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending += [(child, level + 1) for child in children]
    return deepest


# Struct, Value and ListValue framed by hand (google/protobuf/struct.proto):
# the protobuf library refuses to build a message deeper than it can parse.
_NUMBER_ONE = b"\x11\x00\x00\x00\x00\x00\x00\xf0\x3f"  # number_value 1.0


def _field(number: int, data: bytes) -> bytes:
    from roomcast.wire import field_bytes

    return field_bytes(number, data)


def encoded_objects(levels: int) -> bytes:
    """The Struct encoding of :func:`nested_objects` (``levels`` deep), built by hand."""
    encoded = _field(1, _field(1, b"n") + _field(2, _NUMBER_ONE))  # {"n": 1}
    for _ in range(levels - 1):
        value = _field(5, encoded)  # Value.struct_value
        encoded = _field(1, _field(1, b"a") + _field(2, value))  # {"a": value}
    return encoded


def encoded_lists(levels: int) -> bytes:
    """The Struct encoding of :func:`nested_lists` (``levels`` deep), built by hand."""
    values = _field(1, _NUMBER_ONE)  # ListValue [1]
    for _ in range(levels - 2):
        values = _field(1, _field(6, values))  # [values]
    return _field(1, _field(1, b"a") + _field(2, _field(6, values)))  # {"a": values}
