"""Publish and PublishBatch requests read through the gate, their payloads left encoded.

An event embeds its payload's encoding, so a payload decoded into a
``Struct`` only to be encoded again is wasted work: for a batch it was the
largest single cost per event. A request is therefore parsed twice, both
times in the protobuf library's C code:

1. as the public message, nested :data:`FAST_LEVELS` levels deeper than it
   is (:func:`~roomcast.gate.depth_prefix`). That validates every field (a
   payload must be a well-formed ``Struct``, strings UTF-8), and the
   parser's depth limit proves that no payload is nested more than
   :data:`~roomcast.gate.MAX_DEPTH` levels: one that was would be over the
   limit. It costs less than the plain parse it replaces (measured:
   0.56 against 0.84 µs an event, 1,000 small events), and nothing per event
   in Python.
2. as a view of the same message whose ``payload`` field is declared
   ``bytes``. The wire format makes the two readings agree: an embedded
   message and a bytes field are both length-delimited, so the view's
   ``payload`` is exactly the ``Struct`` encoding the client sent.

Payloads of objects nested more than about 21 levels (allowed up to 32) do
not fit under the first parse's depth; their requests are checked payload by
payload with the gate's exact rule (:func:`~roomcast.gate.check_encoded`),
which refuses the deep ones item by item. Numbers that are not finite are
found by a byte pattern over the whole request, then confirmed per payload.

The views are derived from the public descriptors at import, so they follow
the ``.proto`` files; only ``payload`` differs.

One departure from protobuf: a ``payload`` that occurs more than once in one
``PublishRequest`` is published as its last occurrence, where protobuf would
merge the occurrences. No serializer splits a field, and finding the split
ones costs more than the whole fast path saves (measured: a view with
``repeated bytes`` and a look at each event's parts took 300 µs per 1,000
events, against 750 µs for reading the batch). What is published still
passes the gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError

from ..errors import RoomcastError
from ..gate import (
    MAX_DEPTH,
    NEST_FILE,
    PARSER_DEPTH,
    SHORTEST_TOO_DEEP,
    VIEW_PACKAGE,
    check_encoded,
    depth_prefix,
    may_hold_non_finite,
    nest_message,
    view_pool,
)
from ..v1 import realtime_pb2
from ..wire import len_tag, varint

__all__ = ["FAST_LEVELS", "CheckedBatch", "read_publish", "read_publish_batch"]

_PACKAGE = "roomcast.internal"
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
# PublishBatchRequest.events: a batch of one is this tag, a length, a PublishRequest.
_EVENTS = len_tag(1)

#: Levels the fast parse adds above a batch. The parser refuses a message
#: more than PARSER_DEPTH levels below the outermost one. A payload's object
#: or list of level n >= 2 is at least 2n - 1 messages below the payload
#: (a list costs two messages a level, an object three), and the payload is
#: two below the batch: with the batch this many levels down, a container
#: of level MAX_DEPTH + 1 is always past the limit.
FAST_LEVELS = PARSER_DEPTH + 1 - (2 * (MAX_DEPTH + 1) - 1) - 2


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """A request's events through the gate.

    Attributes:
        events: the events, each with ``payload`` as the ``Struct`` bytes
            the client sent.
        refused: the events the gate refused, by index, with why.
    """

    events: Sequence[Any]
    refused: Mapping[int, RoomcastError] = field(default_factory=dict)


def _copy(descriptor: Descriptor) -> descriptor_pb2.DescriptorProto:
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return proto


def _batch_view(
    name: str, payload_type: str | None
) -> tuple[descriptor_pb2.DescriptorProto, descriptor_pb2.DescriptorProto]:
    """PublishBatchRequest as ``name``, its events' payload of ``payload_type`` (None: bytes)."""
    request = _copy(realtime_pb2.PublishRequest.DESCRIPTOR)
    request.name = f"{name}Item"
    for item_field in request.field:
        if item_field.name == "payload":
            if payload_type is None:
                item_field.type = _BYTES
                item_field.ClearField("type_name")
            else:
                item_field.type_name = payload_type
    batch = _copy(realtime_pb2.PublishBatchRequest.DESCRIPTOR)
    batch.name = name
    for batch_field in batch.field:
        if batch_field.name == "events":
            batch_field.type_name = f".{_PACKAGE}.{request.name}"
    return batch, request


def _views() -> tuple[Any, Any]:
    """The classes of the bytes view and of the fast parse's nest."""
    read, read_item = _batch_view("BatchRead", None)
    checked, checked_item = _batch_view("BatchChecked", f".{VIEW_PACKAGE}.Struct1")
    # Nest (gate.py) with a batch as its content: the same field numbers, so
    # depth_prefix builds its prefix.
    nest = nest_message("BatchNest", _PACKAGE, f".{_PACKAGE}.BatchChecked")
    pool = view_pool()
    pool.Add(
        descriptor_pb2.FileDescriptorProto(
            name="roomcast/internal/payloads.proto",
            package=_PACKAGE,
            syntax="proto3",
            dependency=[NEST_FILE],
            message_type=[read_item, read, checked_item, checked, nest],
        )
    )

    def message_class(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))

    return message_class("BatchRead"), message_class("BatchNest")


_BatchRead, _BatchNest = _views()
_read = _BatchRead.FromString
_nest = _BatchNest.FromString


def read_publish_batch(data: bytes) -> CheckedBatch:
    """A PublishBatchRequest through the gate, payloads encoded.

    Raises:
        google.protobuf.message.DecodeError: ``data`` is not a valid
            PublishBatchRequest (a payload that is no ``Struct`` included).
    """
    # A short request is parsed without the depth it could not use (a
    # unary Publish of a small payload, the common case, saves 6 µs).
    levels = FAST_LEVELS if len(data) >= SHORTEST_TOO_DEEP else 1
    try:
        _nest(depth_prefix(levels, data) + data)
    except DecodeError:
        return _exactly(data)  # a payload too deep for the fast parse, or no request at all
    events = _read(data).events
    if not may_hold_non_finite(data):
        return CheckedBatch(events)
    refused: dict[int, RoomcastError] = {}
    for index, event in enumerate(events):
        if may_hold_non_finite(event.payload):
            try:
                check_encoded(event.payload)
            except RoomcastError as error:
                refused[index] = error
    return CheckedBatch(events, refused)


def _exactly(data: bytes) -> CheckedBatch:
    """Check every payload of a request with the gate's exact rule."""
    events = _read(data).events  # raises DecodeError for a request that is not one
    refused: dict[int, RoomcastError] = {}
    for index, event in enumerate(events):
        try:
            check_encoded(event.payload)
        except RoomcastError as error:
            refused[index] = error
    return CheckedBatch(events, refused)


def read_publish(data: bytes) -> CheckedBatch:
    """A PublishRequest through the gate, as a batch of one.

    Raises:
        google.protobuf.message.DecodeError: ``data`` is not a valid PublishRequest.
    """
    return read_publish_batch(b"".join((_EVENTS, varint(len(data)), data)))
