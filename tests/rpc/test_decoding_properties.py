"""Properties of request decoding on the gRPC services (rpc/calls.py, realtime.py, admin.py).

The deserializers the services register (``add_realtime_service``, and
``add_admin_service``'s table built from the descriptor) are pure: they are
taken from the tables here, with no server, and fed any bytes. Each answers
the request, or an :class:`~roomcast.rpc.calls.Undecodable` that
``handle_errors`` ends with INVALID_ARGUMENT and a message naming the type;
nothing escapes (grpcio would answer an escaping exception with UNKNOWN and
its text).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.struct_pb2 import Struct
from hypothesis import given
from hypothesis import strategies as st
from support.strategies import PROPERTY, attempt, json_objects, mutations

from roomcast.metrics import Collector
from roomcast.rpc.admin import AdminServicer, add_admin_service
from roomcast.rpc.calls import Undecodable
from roomcast.rpc.payloads import CheckedBatch
from roomcast.rpc.realtime import RealtimeServicer, add_realtime_service
from roomcast.v1 import admin_pb2, realtime_pb2


class _Tables:
    """Stands in for a server: keeps the generic handlers the services add."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.handlers.extend(handlers)

    def handler(self, path: str) -> Any:
        details = SimpleNamespace(method=path, invocation_metadata=())
        found = [h.service(details) for h in self.handlers]  # type: ignore[arg-type]
        return next(h for h in found if h is not None)


class _Aborted(Exception):
    pass


class _Context:
    """What handle_errors needs of a ServicerContext: abort, which ends the call."""

    def __init__(self) -> None:
        self.ended: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.ended = (code, details)
        raise _Aborted


NODE: Any = SimpleNamespace(metrics=Collector("property-tests"))
REALTIME, ADMIN = RealtimeServicer(NODE), AdminServicer(NODE)
_tables = _Tables()
add_realtime_service(REALTIME, _tables)  # type: ignore[arg-type]
add_admin_service(ADMIN, _tables)  # type: ignore[arg-type]


class Method:
    """One RPC: its request type, the deserializer the service registered, the servicer method."""

    def __init__(self, module: Any, service: str, name: str, servicer: Any) -> None:
        descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[name]
        self.name = name
        self.request: Descriptor = descriptor.input_type
        self.request_class: Any = message_factory.GetMessageClass(descriptor.input_type)
        handler = _tables.handler(f"/{descriptor.containing_service.full_name}/{name}")
        self.deserialize: Callable[[bytes], Any] = handler.request_deserializer
        self.call = getattr(servicer, name)

    def __repr__(self) -> str:
        return self.name


METHODS = [
    Method(module, service, method.name, servicer)
    for module, service, servicer in (
        (realtime_pb2, "RealtimeService", REALTIME),
        (admin_pb2, "AdminService", ADMIN),
    )
    for method in module.DESCRIPTOR.services_by_name[service].methods
]
methods = st.sampled_from(METHODS)


def _assert_refused_with_invalid_argument(method: Method, refusal: Undecodable) -> None:
    assert refusal.message.startswith(f"request: not a valid {method.request.name}")
    context = _Context()
    with contextlib.suppress(_Aborted):
        asyncio.run(method.call(refusal, context))
    assert context.ended is not None
    assert context.ended == (grpc.StatusCode.INVALID_ARGUMENT, refusal.message)


def _assert_decoded(method: Method, data: bytes, request: Any) -> None:
    """A decoded request is what the protobuf library reads from the same bytes."""
    public, undecodable = attempt(lambda: method.request_class.FromString(data), DecodeError)
    if isinstance(request, CheckedBatch):  # Publish, PublishBatch: read through the gate
        if public is None:
            # Only payloads the gate refuses may be too deep for the library.
            assert request.refused, undecodable
            return
        events = [public] if method.name == "Publish" else list(public.events)
        assert [e.room for e in request.events] == [e.room for e in events]
        for index, (read, sent) in enumerate(zip(request.events, events, strict=True)):
            if index not in request.refused:
                assert Struct.FromString(read.payload) == sent.payload
        return
    assert isinstance(request, method.request_class)
    assert public == request
    assert method.request_class.FromString(request.SerializeToString()) == request


# -- messages of every request type, from their descriptors ------------------------

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: st.text(max_size=12),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=False),
}


def _struct(value: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(value)
    return struct


def messages(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type, any subset of fields set (JSON objects for Structs)."""
    if descriptor.full_name == "google.protobuf.Struct":
        return json_objects().map(_struct)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            fields[field.name] = st.dictionaries(_value(key), _value(value), max_size=3)
        elif field.is_repeated:
            fields[field.name] = st.lists(_value(field), max_size=3)
        else:
            fields[field.name] = _value(field)
    cls: Any = message_factory.GetMessageClass(descriptor)
    return st.fixed_dictionaries({}, optional=fields).map(lambda kwargs: cls(**kwargs))


def _value(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return st.deferred(lambda: messages(field.message_type))
    if field.enum_type is not None:
        return st.sampled_from([v.number for v in field.enum_type.values])
    return _SCALARS[field.type]


requests = methods.flatmap(lambda m: st.tuples(st.just(m), messages(m.request)))


@PROPERTY
@given(methods, st.binary(max_size=120))
def test_any_bytes_are_a_request_or_refused_with_invalid_argument(
    method: Method, data: bytes
) -> None:
    request = method.deserialize(data)
    if isinstance(request, Undecodable):
        _assert_refused_with_invalid_argument(method, request)
    else:
        _assert_decoded(method, data, request)


mutated_requests = requests.flatmap(
    lambda drawn: st.tuples(st.just(drawn[0]), mutations(st.just(drawn[1].SerializeToString())))
)


@PROPERTY
@given(mutated_requests)
def test_a_request_with_bytes_gone_wrong_is_a_request_or_refused(
    drawn: tuple[Method, bytes],
) -> None:
    method, data = drawn
    request = method.deserialize(data)
    if isinstance(request, Undecodable):
        _assert_refused_with_invalid_argument(method, request)
    else:
        _assert_decoded(method, data, request)


@PROPERTY
@given(requests)
def test_a_request_of_every_type_is_decoded_as_sent(drawn: tuple[Method, Message]) -> None:
    method, message = drawn
    request = method.deserialize(message.SerializeToString())
    assert not isinstance(request, Undecodable), request
    if isinstance(request, CheckedBatch):
        sent = [message] if method.name == "Publish" else list(message.events)  # type: ignore[attr-defined]
        assert not request.refused  # shallow, finite payloads
        assert len(request.events) == len(sent)
        for read, item in zip(request.events, sent, strict=True):
            assert (read.room, read.event, read.tenant_id) == (
                item.room,
                item.event,
                item.tenant_id,
            )
            assert (read.skip_history, read.idempotency_key) == (
                item.skip_history,
                item.idempotency_key,
            )
            assert Struct.FromString(read.payload) == item.payload
    else:
        assert request == message
