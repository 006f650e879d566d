"""PublishBatch requests read with their payloads left encoded.

An event embeds its payload's encoding, so a payload decoded into a
``Struct`` only to be encoded again is wasted work: for a batch it was the
largest single cost per event. A batch is therefore parsed twice, both in
the protobuf library's C code: once as the public message, which validates
every field (a payload must be a well-formed ``Struct``), then as a view of
the same message whose ``payload`` field is declared ``bytes``. The wire
format makes the two readings agree: an embedded message and a bytes field
are both length-delimited, so the view's ``payload`` is exactly the
``Struct`` encoding the client sent.

The views are derived from the public descriptors at import, so they follow
the ``.proto`` files; only ``payload`` differs.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor

from ..v1 import realtime_pb2

__all__ = ["parse_publish_batch"]

_PACKAGE = "roomcast.internal"
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES


def _batch_view() -> Any:
    """The view class of PublishBatchRequest (its events a view of PublishRequest)."""
    request = _copy(realtime_pb2.PublishRequest.DESCRIPTOR)
    for field in request.field:
        if field.name == "payload":
            field.type = _BYTES
            field.ClearField("type_name")
    batch = _copy(realtime_pb2.PublishBatchRequest.DESCRIPTOR)
    for field in batch.field:
        if field.name == "events":
            field.type_name = f".{_PACKAGE}.{request.name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(
        descriptor_pb2.FileDescriptorProto(
            name="roomcast/internal/payloads.proto",
            package=_PACKAGE,
            syntax="proto3",
            message_type=[request, batch],
        )
    )
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{batch.name}"))


def _copy(descriptor: Descriptor) -> descriptor_pb2.DescriptorProto:
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return proto


_PublishBatchView = _batch_view()
_check_batch = realtime_pb2.PublishBatchRequest.FromString
_read_batch = _PublishBatchView.FromString


def parse_publish_batch(data: bytes) -> Any:
    """A PublishBatchRequest whose events' ``payload`` fields are encoded ``Struct`` s.

    Raises:
        google.protobuf.message.DecodeError: ``data`` is not a valid PublishBatchRequest.
    """
    _check_batch(data)
    return _read_batch(data)
