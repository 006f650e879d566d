"""Translation between the values of ``values.py`` and the generated messages.

betterproto 2.0.0b7's own ``Struct.from_dict`` stores plain Python values
where ``Value`` messages belong, and the result fails to serialise; the
payload is therefore converted here, value by value, as the Struct
specification defines it (``google/protobuf/struct.proto``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import betterproto
from betterproto.lib.google.protobuf import ListValue, NullValue, Struct, Value

from roomcast_client import v1
from roomcast_client.values import (
    Alert,
    Event,
    JSONValue,
    Position,
    Published,
    PublishItem,
    Sender,
)

__all__ = [
    "alert_from",
    "event_from",
    "position_to",
    "publish_request",
    "published_from",
    "struct_from",
    "struct_to",
]


def struct_to(payload: Mapping[str, JSONValue]) -> Struct:
    """A ``Struct`` holding ``payload``.

    Raises:
        TypeError: A key is not a string, or a value is not JSON.
        ValueError: A number is NaN or infinite (JSON has neither).
    """
    fields: dict[str, Value] = {}
    for key, item in payload.items():
        if not isinstance(key, str):
            raise TypeError(f"payload keys must be strings, not {type(key).__name__}")
        fields[key] = _value_to(item)
    return Struct(fields=fields)


def _value_to(item: JSONValue) -> Value:
    if item is None:
        return Value(null_value=NullValue._)  # type: ignore[arg-type]  # betterproto enums are ints
    # bool before int: True is an int to Python, but a bool_value to Struct.
    if isinstance(item, bool):
        return Value(bool_value=item)
    if isinstance(item, int | float):
        number = float(item)
        if not math.isfinite(number):
            raise ValueError(f"payload numbers must be finite, not {item!r}")
        return Value(number_value=number)
    if isinstance(item, str):
        return Value(string_value=item)
    if isinstance(item, Mapping):
        return Value(struct_value=struct_to(item))
    # bytes are a Sequence of ints to Python; JSON has no bytes, so refuse them.
    if isinstance(item, Sequence) and not isinstance(item, bytes | bytearray):
        return Value(list_value=ListValue(values=[_value_to(x) for x in item]))
    raise TypeError(f"payload values must be JSON, not {type(item).__name__}")


def struct_from(struct: Struct) -> dict[str, Any]:
    """The plain ``dict`` a ``Struct`` holds."""
    return {key: _value_from(value) for key, value in struct.fields.items()}


def _value_from(value: Value) -> Any:
    kind, _ = betterproto.which_one_of(value, "kind")
    if kind == "struct_value":
        return struct_from(value.struct_value)
    if kind == "list_value":
        return [_value_from(x) for x in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    # null_value, and a Value with no kind set (the spec calls it an error;
    # null is the closest reading).
    return None


def position_to(position: Position) -> v1.StreamPosition:
    """The wire form of a position."""
    return v1.StreamPosition(offset=position.offset, epoch=position.epoch)


def publish_request(item: PublishItem) -> v1.PublishRequest:
    """The ``PublishRequest`` for one item."""
    return v1.PublishRequest(
        room=item.room,
        event=item.event,
        payload=struct_to(item.payload),
        tenant_id=item.tenant_id or "",
        skip_history=item.skip_history,
        idempotency_key=item.idempotency_key or "",
    )


def published_from(response: v1.PublishResponse) -> Published:
    """Where an event landed."""
    return Published(response.offset, response.epoch, response.id, response.duplicate)


def event_from(message: v1.Event) -> Event:
    """The value for a delivered event."""
    sender = message.sender
    return Event(
        id=message.id,
        room=message.room,
        event=message.event,
        payload=struct_from(message.payload),
        offset=message.offset,
        epoch=message.epoch,
        time=message.time,
        sender=Sender(sender.user_id, sender.tenant_id, sender.connection_id, sender.service),
        tenant_id=message.tenant_id,
    )


# betterproto gives an unset Timestamp as the Unix epoch, not None.
_UNSET_TIME = datetime.fromtimestamp(0, UTC)


def alert_from(message: v1.Alert) -> Alert:
    """The value for an alert of ``GetAlerts``."""
    return Alert(
        id=message.id,
        rule=message.rule,
        severity=_enum_name(v1.AlertSeverity, message.severity),
        state=_enum_name(v1.AlertState, message.state),
        value=message.value,
        threshold=message.threshold,
        started_at=message.started_at,
        resolved_at=None if message.resolved_at == _UNSET_TIME else message.resolved_at,
        tenant_id=message.tenant_id,
        message=message.message,
        node_id=message.node_id,
    )


def _enum_name(kind: type[betterproto.Enum], value: int) -> str:
    """``"warning"`` for ``ALERT_SEVERITY_WARNING``; ``"unknown"`` for a value
    added to the ``.proto`` after this client was generated."""
    try:
        name = kind(int(value)).name
    except ValueError:
        name = None
    return name.lower() if name else "unknown"
