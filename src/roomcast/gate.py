"""The one gate every event's payload passes before it gets an offset.

Whatever shell an event comes from — gRPC ``Publish`` and ``PublishBatch``,
a WebSocket ``send_message``, a ``cursor`` position, ``TrackActivity``
details, or an event the server makes itself — its payload reaches the node
as the encoding of a ``google.protobuf.Struct`` that this module produced or
checked, and nothing else is stored or sent. The rule is the same on every
path:

- **Depth**: at most :data:`MAX_DEPTH` (32) levels of nesting; the payload
  object is level 1 and every object or list inside a value adds one.
  Protobuf decoders refuse messages nested more than 100 levels deep
  (upb, C++ and Java by default), and a ``Struct`` spends three of those on
  each level of objects: an event of 32 levels, inside a ``SubscribeResponse``
  or ``GetHistoryResponse``, still decodes with levels to spare; one of 34
  does not. 32 is the limit on every input path, so nothing one client may
  send is something another cannot read.
- **Numbers** are finite: JSON has no NaN or Infinity, and protobuf's JSON
  mapping (grpcurl, protobuf-es ``toJson``) refuses them.
- **Size** (``max_payload_bytes``, encoded) is checked by the node beside the
  other per-event limits.

A refusal is :class:`~roomcast.errors.InvalidArgument` naming the field and
the limit. JSON values (WebSocket frames, server-made events) are checked by
walking them (:func:`encode_json`), before ``Struct.update`` ever sees them:
it recurses once per level and would fail deep inside with RecursionError.

Encoded payloads (gRPC) are checked by the protobuf library's C parser, with
no Python per event: :data:`StructView` is ``Struct`` re-declared once per
level, ``Value`` of level 32 pointing at :data:`TooDeep`, a message with a
required field that no ``Struct`` ever sets. A parsed view reports a payload
nested deeper than 32 levels as uninitialised (``IsInitialized()``, in C).
:func:`depth_prefix` builds the bytes that put a message some levels deeper
than it is, so the parser's own depth limit answers questions about depth
(see :mod:`roomcast.rpc.payloads`, which reads whole batches this way).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct

from .errors import InvalidArgument
from .wire import len_tag, varint

__all__ = [
    "MAX_DEPTH",
    "NEST_FILE",
    "PARSER_DEPTH",
    "SHORTEST_TOO_DEEP",
    "VIEW_PACKAGE",
    "StructView",
    "check_encoded",
    "check_json",
    "depth_prefix",
    "encode_json",
    "may_hold_non_finite",
    "message_field",
    "nest_message",
    "too_deep",
    "view_pool",
]

#: Levels of nesting a payload may have: the payload object is level 1.
MAX_DEPTH = 32
#: Bytes under which no payload (nor a request holding one) can be nested
#: deeper than :data:`MAX_DEPTH`: each level below the payload object takes
#: at least four (a list: a tag and a length for ``list_value``, two more
#: for ``values``; an object more).
SHORTEST_TOO_DEEP = 4 * MAX_DEPTH
#: How deep the protobuf parsers roomcast's clients use go (upb, C++, Java:
#: ``kUpb_WireFormat_DefaultDepthLimit``, ``io::CodedInputStream`` default).
PARSER_DEPTH = 100

VIEW_PACKAGE = "roomcast.gate"
#: The file of the views, for other views that refer to them.
NEST_FILE = "roomcast/gate/views.proto"
_TOO_DEEP_FILE = "roomcast/gate/too_deep.proto"
_F = descriptor_pb2.FieldDescriptorProto
# Value's fields (google/protobuf/struct.proto), re-declared per level.
_SCALARS = (
    ("null_value", 1, _F.TYPE_ENUM),
    ("number_value", 2, _F.TYPE_DOUBLE),
    ("string_value", 3, _F.TYPE_STRING),
    ("bool_value", 4, _F.TYPE_BOOL),
)
_NEST_INNER = len_tag(1)  # Nest.inner
_NEST_CONTENT = len_tag(2)  # Nest.content


def too_deep(field: str) -> InvalidArgument:
    """The refusal of a payload nested deeper than :data:`MAX_DEPTH`."""
    return InvalidArgument(
        f"{field}: nested deeper than {MAX_DEPTH} levels "
        "(the payload object is level 1; each object or list inside adds one)"
    )


def _not_finite(field: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: numbers must be finite (JSON has no NaN or Infinity)")


def check_json(value: Mapping[str, Any], *, field: str = "payload", levels: int = 1) -> None:
    """Check a JSON object against the gate's rule, without recursion.

    Args:
        value: the object (from ``orjson.loads``, or built by the server).
        field: the name refusals give it.
        levels: the level ``value`` will sit at inside the payload (a cursor
            position travels as ``{"position": ...}``: level 2).

    Raises:
        InvalidArgument: nested deeper than :data:`MAX_DEPTH`, a number that
            is not finite, or a value JSON cannot hold.
    """
    # (container, its level); a level's children are at level + 1.
    pending: list[tuple[Any, int]] = [(value, levels)]
    while pending:
        container, level = pending.pop()
        if level > MAX_DEPTH:
            raise too_deep(field)
        items = container.values() if isinstance(container, Mapping) else container
        for item in items:
            if isinstance(item, Mapping | list | tuple):
                pending.append((item, level + 1))
            elif isinstance(item, float):
                if not math.isfinite(item):
                    raise _not_finite(field)
            elif not (item is None or isinstance(item, str | int)):
                raise InvalidArgument(f"{field}: holds a {type(item).__name__}, not a JSON value")
        if isinstance(container, Mapping) and not all(isinstance(k, str) for k in container):
            raise InvalidArgument(f"{field}: object keys must be strings")


def encode_json(value: Mapping[str, Any], *, field: str = "payload", levels: int = 1) -> bytes:
    """A JSON object through the gate: the encoded ``Struct`` to publish.

    Raises:
        InvalidArgument: see :func:`check_json`; also an integer too large
            for a double, or a string with a lone surrogate.
    """
    check_json(value, field=field, levels=levels)
    struct = Struct()
    try:
        struct.update(value)
        return struct.SerializeToString()
    except (OverflowError, UnicodeError):
        # Server-made values only (orjson refuses both on the way in).
        raise InvalidArgument(
            f"{field}: holds an integer too large for a double or text that is not Unicode"
        ) from None


def message_field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    type_name: str,
    label: int = _F.LABEL_OPTIONAL,
) -> descriptor_pb2.FieldDescriptorProto:
    """Add a field of message type ``type_name`` (fully qualified) to ``message``."""
    return message.field.add(
        name=name, number=number, type=_F.TYPE_MESSAGE, type_name=type_name, label=label
    )


def nest_message(name: str, package: str, content_type: str) -> descriptor_pb2.DescriptorProto:
    """A message that carries ``content_type`` one level deeper per ``inner`` (see depth_prefix).

    ``inner`` is field 1 and ``content`` field 2 in every such message, so
    one prefix serves them all.
    """
    nest = descriptor_pb2.DescriptorProto(name=name)
    message_field(nest, "inner", 1, f".{package}.{name}")
    message_field(nest, "content", 2, content_type)
    return nest


def _struct_views(file: descriptor_pb2.FileDescriptorProto) -> None:
    """Struct, Value and ListValue once per level, level 32's deeper values :data:`TooDeep`.

    ``Struct{n}`` and ``List{n}`` are containers of level n; their values
    are ``Value{n}``, whose objects and lists are of level n + 1.
    """
    for level in range(1, MAX_DEPTH + 1):
        deeper_struct = f".{VIEW_PACKAGE}.Struct{level + 1}"
        deeper_list = f".{VIEW_PACKAGE}.List{level + 1}"
        if level == MAX_DEPTH:
            deeper_struct = deeper_list = f".{VIEW_PACKAGE}.TooDeep"
        value_type = f".{VIEW_PACKAGE}.Value{level}"
        struct = file.message_type.add(name=f"Struct{level}")
        # A plain repeated entry, not a map: the parser moves a map entry
        # holding an unknown field to the unknown fields, values and all,
        # which would hide a TooDeep inside it from IsInitialized.
        entry = struct.nested_type.add(name="Entry")
        entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
        message_field(entry, "value", 2, value_type)
        message_field(
            struct, "fields", 1, f".{VIEW_PACKAGE}.Struct{level}.Entry", _F.LABEL_REPEATED
        )
        value = file.message_type.add(name=f"Value{level}")
        value.oneof_decl.add(name="kind")
        for name, number, kind in _SCALARS:
            scalar = value.field.add(
                name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL, oneof_index=0
            )
            if kind == _F.TYPE_ENUM:
                scalar.type_name = ".google.protobuf.NullValue"
        for name, number, type_name in (
            ("struct_value", 5, deeper_struct),
            ("list_value", 6, deeper_list),
        ):
            message_field(value, name, number, type_name).oneof_index = 0
        values = file.message_type.add(name=f"List{level}")
        message_field(values, "values", 1, value_type, _F.LABEL_REPEATED)


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    struct_file = descriptor_pb2.FileDescriptorProto()
    Struct.DESCRIPTOR.file.CopyToProto(struct_file)
    pool.Add(struct_file)
    # proto2, for the required field: a proto3 file cannot declare one.
    too_deep_file = descriptor_pb2.FileDescriptorProto(
        name=_TOO_DEEP_FILE, package=VIEW_PACKAGE, syntax="proto2"
    )
    never = too_deep_file.message_type.add(name="TooDeep")
    # A required field of its own type: no bytes can ever fill it, since a
    # TooDeep that set it would hold one more TooDeep that must set it too,
    # without end (a scalar could be set by a client's unknown field).
    message_field(never, "never", 2**29 - 1, f".{VIEW_PACKAGE}.TooDeep", _F.LABEL_REQUIRED)
    pool.Add(too_deep_file)
    views = descriptor_pb2.FileDescriptorProto(
        name=NEST_FILE,
        package=VIEW_PACKAGE,
        syntax="proto3",
        dependency=[struct_file.name, _TOO_DEEP_FILE],
    )
    _struct_views(views)
    views.message_type.append(nest_message("Nest", VIEW_PACKAGE, f".{VIEW_PACKAGE}.Struct1"))
    pool.Add(views)
    return pool


def view_pool() -> descriptor_pool.DescriptorPool:
    """The pool holding the views (other modules add their own views of requests to it)."""
    return _POOL


_POOL = _build_pool()
#: ``Struct`` as the gate reads it: uninitialised when nested too deep.
StructView: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{VIEW_PACKAGE}.Struct1")
)
_Nest: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{VIEW_PACKAGE}.Nest"))


def depth_prefix(levels: int, content: bytes, content_tag: bytes = _NEST_CONTENT) -> bytes:
    """Bytes that, put before ``content``, nest it ``levels`` messages deeper.

    The result and ``content`` together are a ``Nest`` whose innermost
    ``content`` field (or the field of tag ``content_tag``) holds
    ``content``. Parsing them, the parser counts ``levels`` more levels of
    depth before it reaches ``content``: a parse that succeeds proves that
    ``content`` is at least ``levels`` levels shallower than the parser's
    limit. Only the prefix is built here; the caller concatenates (one copy).
    """
    # Built from the inside out: each level is a tag and the length of all
    # that follows it.
    length = varint(len(content))
    parts = [length, content_tag]
    size = len(content) + len(length) + len(content_tag)
    for _ in range(levels - 1):
        length = varint(size)
        parts += (length, _NEST_INNER)
        size += len(length) + len(_NEST_INNER)
    parts.reverse()
    return b"".join(parts)


# How upb's DecodeError says a message went past its depth limit.
_PARSER_TOO_DEEP = "MaxDepth"

# Levels between an event's payload and the outermost message a client
# decodes it in (SubscribeResponse or GetHistoryResponse, then Event), plus
# one to spare.
_CLIENT_LEVELS = 3


def check_encoded(payload: bytes, *, field: str = "payload") -> None:
    """Check one encoded ``Struct`` against the gate's rule (exact).

    The batch reader takes a faster way for batches of shallow payloads
    and comes here for the others.

    Raises:
        InvalidArgument: nested deeper than :data:`MAX_DEPTH` (or than
            clients can decode), or a number that is not finite.
        google.protobuf.message.DecodeError: ``payload`` is not a ``Struct``.
    """
    try:
        nest = _Nest.FromString(depth_prefix(_CLIENT_LEVELS, payload) + payload)
    except DecodeError:
        try:
            Struct.FromString(payload)
        except DecodeError as error:
            # Past the parser's own depth, upb stops before it can say
            # whether the rest is a Struct: too deep either way.
            if _PARSER_TOO_DEEP not in str(error):
                raise  # no Struct at all
        raise too_deep(field) from None  # a Struct, nested too deep for clients
    view = nest
    for _ in range(_CLIENT_LEVELS - 1):
        view = view.inner
    if not view.content.IsInitialized():
        raise too_deep(field)
    if not _finite(payload):
        raise _not_finite(field)


# Value.number_value is a double: tag 0x11, then 8 bytes, little-endian. A
# NaN or an infinity has every exponent bit set: its last two bytes are
# 0xF0 or more, then 0x7F or 0xFF. Parsers also accept the tag written
# longer (0x91 0x80... 0x00, up to five bytes), searched apart: a pattern
# that starts with either tag is ten times slower to search than two that
# start with one byte each. Bytes without either pattern hold no such
# number; bytes with one (in a string, say) are walked to be sure.
_NON_FINITE = re.compile(rb"\x11.{6}[\xf0-\xff][\x7f\xff]", re.DOTALL)
_NON_FINITE_LONG_TAG = re.compile(rb"\x91\x80{0,3}\x00.{6}[\xf0-\xff][\x7f\xff]", re.DOTALL)


def may_hold_non_finite(data: bytes) -> bool:
    """False when ``data`` (payloads, or a request holding them) has no NaN or infinity.

    A fast search over the bytes: True may be a false alarm (a string that
    looks like one), to be confirmed with :func:`check_encoded`.
    """
    return _NON_FINITE.search(data) is not None or (
        b"\x91" in data and _NON_FINITE_LONG_TAG.search(data) is not None
    )


def _finite(payload: bytes) -> bool:
    if not may_hold_non_finite(payload):
        return True
    struct = Struct.FromString(payload)
    pending: list[Any] = [struct]
    while pending:
        container = pending.pop()
        values = container.fields.values() if isinstance(container, Struct) else container.values
        for item in values:
            kind = item.WhichOneof("kind")
            if kind == "number_value" and not math.isfinite(item.number_value):
                return False
            if kind == "struct_value":
                pending.append(item.struct_value)
            elif kind == "list_value":
                pending.append(item.list_value)
    return True
