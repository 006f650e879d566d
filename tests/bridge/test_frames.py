"""The room protocol as data (src/roomcast/bridge/frames.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from google.protobuf.struct_pb2 import Struct
from hypothesis import given
from hypothesis import strategies as st

from roomcast.bridge.frames import (
    Auth,
    Cursor,
    HistoryQuery,
    JoinRoom,
    LeaveRoom,
    Ping,
    PresenceQuery,
    SendMessage,
    Typing,
    decode,
    encode_publication,
    error_frame,
    frame_id,
    parse,
)
from roomcast.brokers import Publication
from roomcast.errors import Forbidden, InvalidArgument, RoomcastError, UnknownType
from roomcast.history import Position
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1.event_pb2 import Event, Sender


@pytest.mark.parametrize(
    ("data", "frame"),
    [
        ({"type": "auth", "token": "t"}, Auth("t")),
        ({"type": "join_room", "room": "chat.a", "id": 1}, JoinRoom("chat.a", None, 1)),
        (
            {"type": "join_room", "room": "chat.a", "since": {"offset": 3, "epoch": "e"}},
            JoinRoom("chat.a", Position(3, "e")),
        ),
        ({"type": "leave_room", "room": "chat.a", "id": "x"}, LeaveRoom("chat.a", "x")),
        (
            {"type": "send_message", "event": "e.x", "payload": {"a": 1}, "rooms": ["chat.a"]},
            SendMessage("e.x", {"a": 1}, ("chat.a",)),
        ),
        (
            {"type": "send_message", "event": "e.x", "room": "chat.a"},
            SendMessage("e.x", {}, ("chat.a",)),
        ),
        ({"type": "typing", "room": "chat.a", "state": False}, Typing("chat.a", False)),
        ({"type": "cursor", "room": "chat.a", "position": {"x": 1}}, Cursor("chat.a", {"x": 1})),
        ({"type": "presence", "room": "chat.a"}, PresenceQuery("chat.a")),
        ({"type": "history", "room": "chat.a", "limit": 5}, HistoryQuery("chat.a", None, 5)),
        ({"type": "ping", "id": 7, "extra": "ignored"}, Ping(7)),
    ],
)
def test_every_client_frame_parses(data: dict[str, Any], frame: object) -> None:
    assert parse(data) == frame


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "type"),
        ({"type": 3}, "type"),
        ({"type": "join_room"}, "room"),
        ({"type": "join_room", "room": ""}, "room"),
        ({"type": "join_room", "room": "a", "since": 3}, "since"),
        ({"type": "join_room", "room": "a", "since": {"offset": -1}}, "since.offset"),
        ({"type": "join_room", "room": "a", "since": {"offset": True}}, "since.offset"),
        ({"type": "join_room", "room": "a", "since": {"epoch": 5}}, "since.epoch"),
        ({"type": "send_message", "event": "e", "rooms": []}, "rooms"),
        ({"type": "send_message", "event": "e", "rooms": [1]}, "rooms"),
        ({"type": "send_message", "event": "e", "rooms": ["a"], "payload": []}, "payload"),
        ({"type": "typing", "room": "a", "state": "yes"}, "state"),
        ({"type": "cursor", "room": "a"}, "position"),
        ({"type": "history", "room": "a", "limit": 0}, "limit"),
        ({"type": "history", "room": "a", "limit": 5000}, "limit"),
        ({"type": "ping", "id": {"a": 1}}, "id"),
        ({"type": "ping", "id": "x" * 65}, "id"),
        ({"type": "ping", "id": True}, "id"),
    ],
)
def test_malformed_frames_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse(data)
    assert refused.value.message.startswith(f"{field}:")


def test_unknown_types_have_their_own_code() -> None:
    with pytest.raises(UnknownType) as refused:
        parse({"type": "subscribe"})
    assert refused.value.frame_code == "unknown_type"


@pytest.mark.parametrize("text", ["", "nope", "[1]", "3", '"a"', "{'a': 1}", "NaN"])
def test_decode_accepts_only_json_objects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        decode(text)


@given(st.one_of(st.text(max_size=80), st.integers(), st.booleans(), st.none(), st.floats()))
def test_frame_id_is_echoed_only_when_well_formed(value: object) -> None:
    echoed = frame_id({"id": value})
    good = (isinstance(value, str) and len(value) <= 64) or (
        isinstance(value, int) and not isinstance(value, bool)
    )
    assert echoed == (value if good else None)


def test_error_frames_carry_code_message_and_id() -> None:
    assert error_frame(Forbidden("room 'x': no"), "q1") == {
        "type": "error",
        "code": "forbidden",
        "message": "room 'x': no",
        "id": "q1",
    }
    assert "id" not in error_frame(RoomcastError("boom"))


def publication(event: Event, *, signal: bool = False) -> Publication:
    room = Room.of(RoomName(event.room), TenantId("acme"))
    return Publication(room, event.offset, event.epoch, 0, event.SerializeToString(), signal)


def test_events_encode_to_the_documented_frame() -> None:
    payload = Struct()
    payload.update({"n": 3, "half": 0.5, "nested": {"list": [1, "a", None, True]}})
    event = Event(
        id="i-1",
        room="chat.a",
        event="chat.message",
        payload=payload,
        offset=7,
        epoch="e1",
        sender=Sender(user_id="alice", tenant_id="acme", connection_id="c1"),
        tenant_id="acme",
    )
    event.time.FromNanoseconds(1_795_000_000_123_456_789)
    text, skip = encode_publication(publication(event))
    assert skip == ""  # an event goes to its sender too
    assert orjson.loads(text) == {
        "type": "event",
        "room": "chat.a",
        "event": "chat.message",
        "payload": {"n": 3, "half": 0.5, "nested": {"list": [1, "a", None, True]}},
        "offset": 7,
        "epoch": "e1",
        "id": "i-1",
        "time": "2026-11-18T11:06:40.123Z",
        "sender": {"user_id": "alice", "tenant_id": "acme", "connection_id": "c1"},
    }


def test_signals_encode_to_their_own_type() -> None:
    payload = Struct()
    payload.update({"state": True})
    event = Event(
        room="chat.a",
        event="typing",
        payload=payload,
        sender=Sender(user_id="bob", tenant_id="acme", connection_id="c2"),
    )
    text, skip = encode_publication(publication(event, signal=True))
    assert skip == "c2"
    assert orjson.loads(text) == {
        "type": "typing",
        "room": "chat.a",
        "user": {"user_id": "bob", "tenant_id": "acme", "connection_id": "c2"},
        "state": True,
    }
