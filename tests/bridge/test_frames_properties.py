"""Properties of the client frame parser (src/roomcast/bridge/frames.py).

Whatever a client sends — bytes, text, any JSON, a frame of the protocol
with a field gone wrong — ``parse(decode(...))`` gives one of the frame
classes, with the fields as sent, or raises a :class:`RoomcastError` of the
tree (``bad_request``, ``unknown_type``) whose message names the field at
fault. Payloads it lets through are then judged by the gate alone.
docs/protocol.md, "Frames from the client", is the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from support.nesting import depth
from support.strategies import PROPERTY, any_text, attempt, json_scalars, json_values, payloads

from roomcast.bridge.frames import (
    MAX_HISTORY_LIMIT,
    Auth,
    ClientFrame,
    Cursor,
    HistoryQuery,
    JoinRoom,
    LeaveRoom,
    Ping,
    PresenceQuery,
    SendMessage,
    Typing,
    decode,
    frame_id,
    parse,
)
from roomcast.errors import InvalidArgument, RoomcastError, UnknownType
from roomcast.gate import MAX_DEPTH, check_json, encode_json
from roomcast.history import Position

FRAME_CLASSES = (
    Auth,
    JoinRoom,
    LeaveRoom,
    SendMessage,
    Typing,
    Cursor,
    PresenceQuery,
    HistoryQuery,
    Ping,
)
MAX_ID = 64
MAX_PAGE_TOKEN = 128

# -- the "client frames" table as data ------------------------------------------------


def _text_ok(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _since_ok(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    offset, epoch = value.get("offset", 0), value.get("epoch", "")
    return (
        type(offset) is int
        and 0 <= offset < 2**64
        and isinstance(epoch, str)
        and len(epoch) <= MAX_ID
    )


def _rooms_ok(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, str) for r in value)


def _id_ok(value: Any) -> bool:
    return type(value) is int or (isinstance(value, str) and len(value) <= MAX_ID)


# What each field accepts, and what a valid value looks like. A field is
# required unless it has a default.
Field = tuple[Callable[[Any], bool], st.SearchStrategy[Any], bool]
rooms = st.text(min_size=1, max_size=20)  # any Unicode: names are judged later (rooms.py)
positions = st.fixed_dictionaries(
    {}, optional={"offset": st.integers(0, 2**64 - 1), "epoch": st.text(max_size=MAX_ID)}
)
FIELDS: dict[str, dict[str, Field]] = {
    "auth": {"token": (_text_ok, st.text(min_size=1), True)},
    "join_room": {
        "room": (_text_ok, rooms, True),
        "since": (_since_ok, st.none() | positions, False),
    },
    "leave_room": {"room": (_text_ok, rooms, True)},
    "send_message": {
        "event": (_text_ok, st.text(min_size=1, max_size=20), True),
        "payload": (lambda v: isinstance(v, dict), payloads(), False),
        "rooms": (_rooms_ok, st.lists(rooms, min_size=1, max_size=3), True),
    },
    "typing": {
        "room": (_text_ok, rooms, True),
        "state": (lambda v: isinstance(v, bool), st.booleans(), True),
    },
    "cursor": {
        "room": (_text_ok, rooms, True),
        "position": (lambda v: isinstance(v, dict), payloads(), True),
    },
    "presence": {
        "room": (_text_ok, rooms, True),
        "page_token": (
            lambda v: isinstance(v, str) and len(v) <= MAX_PAGE_TOKEN,
            st.text(max_size=MAX_PAGE_TOKEN),
            False,
        ),
    },
    "history": {
        "room": (_text_ok, rooms, True),
        "since": (_since_ok, st.none() | positions, False),
        "limit": (
            lambda v: type(v) is int and 1 <= v <= MAX_HISTORY_LIMIT,
            st.integers(1, MAX_HISTORY_LIMIT),
            False,
        ),
    },
    "ping": {},
}
ID: Field = (_id_ok, st.text(max_size=MAX_ID) | st.integers(-(2**63), 2**64 - 1), False)


def _fields(kind: str) -> dict[str, Field]:
    return {**FIELDS[kind], "id": ID}


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed client frame of any type (optional fields present or not)."""
    kind = draw(st.sampled_from(sorted(FIELDS)))
    frame: dict[str, Any] = {"type": kind}
    for name, (_, values, required) in _fields(kind).items():
        if required or draw(st.booleans()):
            frame[name] = draw(values)
    return frame


def _expected(frame: Mapping[str, Any]) -> ClientFrame:
    """The frame class the table says a valid frame stands for, its fields as sent."""
    id_ = frame.get("id")
    since = frame.get("since")
    position = None if since is None else Position(since.get("offset", 0), since.get("epoch", ""))
    match frame["type"]:
        case "auth":
            return Auth(frame["token"], id_)
        case "join_room":
            return JoinRoom(frame["room"], position, id_)
        case "leave_room":
            return LeaveRoom(frame["room"], id_)
        case "send_message":
            return SendMessage(frame["event"], frame.get("payload", {}), tuple(frame["rooms"]), id_)
        case "typing":
            return Typing(frame["room"], frame["state"], id_)
        case "cursor":
            return Cursor(frame["room"], frame["position"], id_)
        case "presence":
            return PresenceQuery(frame["room"], frame.get("page_token", ""), id_)
        case "history":
            return HistoryQuery(frame["room"], position, frame.get("limit", 100), id_)
    return Ping(id_)


def _assert_gated(frame: ClientFrame) -> None:
    """What the session does next with a payload: the gate accepts it exactly within limits."""
    if isinstance(frame, SendMessage):
        encoded, error = attempt(lambda: encode_json(frame.payload), InvalidArgument)
        assert (encoded is not None) == (depth(frame.payload) <= MAX_DEPTH), error
    elif isinstance(frame, Cursor):
        # It travels as {"position": ...}: one level less to spare.
        _, error = attempt(
            lambda: check_json(frame.position, field="position", levels=2), InvalidArgument
        )
        assert (error is None) == (depth(frame.position) < MAX_DEPTH), error


def _read(data: str | bytes | Mapping[str, Any]) -> ClientFrame | None:
    """The frame, or None for a documented refusal (any other exception fails the test)."""
    frame, error = attempt(
        lambda: parse(data if isinstance(data, Mapping) else decode(data)), RoomcastError
    )
    if frame is None:
        assert isinstance(error, InvalidArgument)  # bad_request, or its subclass unknown_type
        assert type(error).frame_code in {"bad_request", "unknown_type"}
        return None
    assert isinstance(frame, FRAME_CLASSES)
    return frame


# -- any input ---------------------------------------------------------------------

# Pieces of JSON text, so random text is often nearly a frame: literals JSON
# does not have, escapes of lone surrogates, numbers past a double.
_PIECES = st.sampled_from(
    [
        "{", "}", "[", "]", ":", ",", '"type"', '"send_message"', '"join_room"', '"room"',
        '"rooms"', '"payload"', '"since"', '"offset"', '"id"', '"a"', "null", "true", "0",
        "-1", "18446744073709551616", "1e400", "NaN", "Infinity", "-Infinity", '"\\ud800"',
        '"\\udfff\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"', " ",
    ]
)  # fmt: skip
json_ish = st.lists(_PIECES | st.text(max_size=3), max_size=30).map("".join)


@PROPERTY
@given(st.binary(max_size=200) | json_ish.map(str.encode))
def test_any_bytes_are_a_frame_or_a_documented_refusal(data: bytes) -> None:
    _read(data)


@PROPERTY
@given(any_text | json_ish)
def test_any_text_is_a_frame_or_a_documented_refusal(text: str) -> None:
    frame = _read(text)
    if frame is not None:
        # Whatever it holds, UTF-8 (and so protobuf and JSON) can carry: no lone surrogates.
        for name in ("token", "room", "event", "rooms", "payload", "position", "page_token", "id"):
            orjson.dumps(getattr(frame, name, None))


@PROPERTY
@given(json_values(json_scalars(finite=True)))
def test_any_json_value_is_a_frame_or_a_documented_refusal(value: Any) -> None:
    frame = _read(orjson.dumps(value))
    if not isinstance(value, dict):
        assert frame is None
    if frame is not None:
        _assert_gated(frame)


@PROPERTY
@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "room", "rooms", "since", "payload", "limit"]),
        json_values(json_scalars(ints=st.integers())),
        max_size=5,
    )
)
def test_any_mapping_is_a_frame_or_a_documented_refusal(data: dict[str, Any]) -> None:
    _read(data)
    assert frame_id(data) is None or _id_ok(frame_id(data))


# -- frames of the protocol --------------------------------------------------------


@PROPERTY
@given(frames())
def test_a_well_formed_frame_reads_as_sent(frame: dict[str, Any]) -> None:
    read = _read(frame)
    assert read == _expected(frame)
    assert _read(orjson.dumps(frame)) == read  # the same through JSON text
    assert read is not None
    _assert_gated(read)


# Values of any type, size and depth to put where a field belongs.
wrong_values = (
    json_values(json_scalars(ints=st.integers() | st.integers(-(2**70), 2**70), texts=any_text))
    | payloads()
    | st.lists(payloads(), max_size=1)
    | st.text(min_size=60, max_size=300)
)


@st.composite
def frames_with_one_field_wrong(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A well-formed frame with one field (the returned one) dropped or set to anything."""
    frame = draw(frames())
    name = draw(st.sampled_from(sorted(_fields(frame["type"]))))
    if draw(st.booleans()):
        frame.pop(name, None)
    else:
        frame[name] = draw(wrong_values)
    return frame, name


@PROPERTY
@given(frames_with_one_field_wrong())
def test_a_frame_with_a_field_gone_wrong_is_refused_naming_it(
    drawn: tuple[dict[str, Any], str],
) -> None:
    frame, name = drawn
    valid, _, required = _fields(frame["type"])[name]
    ok = valid(frame[name]) if name in frame else not required
    _, error = attempt(lambda: parse(frame), RoomcastError)
    if ok:
        assert error is None
        assert parse(frame) == _expected(frame)
    else:
        assert type(error) is InvalidArgument
        assert error.message.startswith(name), f"{error.message!r} does not name {name!r}"


@PROPERTY
@given(
    any_text | st.text(min_size=40) | st.integers() | st.none() | st.lists(st.text(), max_size=1)
)
def test_a_frame_type_is_known_or_refused_naming_it(kind: Any) -> None:
    frame = {"type": kind, "room": "r", "token": "t"}
    result, error = attempt(lambda: parse(frame), RoomcastError)
    if isinstance(kind, str) and kind in FIELDS:
        assert result is not None or error is not None
        return
    assert isinstance(error, InvalidArgument)
    assert error.message.startswith("type: ")
    assert isinstance(error, UnknownType) == isinstance(kind, str)
    if isinstance(kind, str):  # quoted, at most 40 characters of it
        assert error.message.startswith(f"type: {kind[:40]!r} is not a frame type")


_LITERALS = st.sampled_from(
    ["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e999", "nan", "inf"]
)


@PROPERTY
@given(frames(), _LITERALS, st.data())
def test_non_finite_number_literals_are_refused_wherever_they_stand(
    frame: dict[str, Any], literal: str, data: st.DataObject
) -> None:
    # JSON has no NaN or Infinity: a frame carrying one is not JSON, whatever field holds it.
    name = data.draw(st.sampled_from(sorted(frame)))
    frame[name] = "\x00here\x00"
    text = orjson.dumps(frame).decode().replace('"\\u0000here\\u0000"', literal, 1)
    _, error = attempt(lambda: decode(text), InvalidArgument)
    assert error is not None
    assert error.message == "frame: not valid JSON"


@PROPERTY
@given(
    st.integers(1, 3000),
    st.sampled_from(["[", '{"a":']),
    st.sampled_from(["send_message", "cursor"]),
)
def test_deep_frames_are_refused_or_left_to_the_gate(levels: int, opening: str, kind: str) -> None:
    # Built as text, iteratively: past the JSON parser's own depth limit too.
    closing = "]" if opening == "[" else "}"
    nested = opening * levels + "1" + closing * levels
    field = "payload" if kind == "send_message" else "position"
    text = f'{{"type":"{kind}","event":"e","rooms":["r"],"room":"r","{field}":{{"a":{nested}}}}}'
    frame = _read(text)
    if frame is not None:
        assert (
            depth(frame.payload if isinstance(frame, SendMessage) else frame.position) == levels + 1
        )
        _assert_gated(frame)
    else:
        assert levels > MAX_DEPTH  # only a depth no payload may have is refused this early


@PROPERTY
@given(
    st.dictionaries(
        any_text, json_values(json_scalars(ints=st.integers(), texts=any_text)), max_size=3
    ),
    st.data(),
)
def test_any_id_echoed_is_a_valid_id(data: dict[str, Any], draw: st.DataObject) -> None:
    data["id"] = draw.draw(wrong_values | ID[1])
    echoed = frame_id(data)
    assert echoed is None or (_id_ok(echoed) and echoed == data["id"])
