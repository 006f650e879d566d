"""The WebSocket room protocol as data: client frames checked, server frames built.

Pure: no sockets, no awaits, no clock. :func:`parse` turns a client's text
frame into one of the frame classes below or raises a :class:`RoomcastError`
naming the field at fault; the ``*_frame`` functions build what the server
sends. docs/protocol.md is the contract; its examples run against the server
in the tests.

Events and signals are encoded once per publication (:func:`encode_publication`)
and the same bytes go to every connection.

Replies that carry events or members (``history``, ``room_joined``,
``missed``, ``presence``) are built against a byte budget: each event is
encoded on its own and added while the reply fits (at least one, however
large), and the reply says whether more follow. Nothing beyond the budget
is encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.struct_pb2 import ListValue, Struct

from ..brokers import Publication
from ..connections import Joined
from ..errors import InvalidArgument, RoomcastError, UnknownType
from ..history import Page, Position
from ..presence import Member
from ..v1.event_pb2 import Event, Sender

__all__ = [
    "MAX_HISTORY_LIMIT",
    "Auth",
    "ClientFrame",
    "Cursor",
    "FrameId",
    "HistoryQuery",
    "JoinRoom",
    "LeaveRoom",
    "Ping",
    "PresenceQuery",
    "SendMessage",
    "Typing",
    "confirmed_frame",
    "decode",
    "encode",
    "encode_publication",
    "error_frame",
    "event_json",
    "frame_id",
    "history_frame",
    "member_size",
    "members_json",
    "missed_frame",
    "parse",
    "presence_frame",
    "room_joined_frame",
]

FrameId = str | int | None
MAX_ID_LENGTH = 64
MAX_HISTORY_LIMIT = 1_000
DEFAULT_HISTORY_LIMIT = 100
MAX_PAGE_TOKEN = 128


@dataclass(frozen=True, slots=True)
class Auth:
    """``auth``: the token, first thing on a connection or to refresh it."""

    token: str
    id: FrameId = None


@dataclass(frozen=True, slots=True)
class JoinRoom:
    """``join_room``: follow a room, optionally from a position."""

    room: str
    since: Position | None = None
    id: FrameId = None


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    """``leave_room``."""

    room: str
    id: FrameId = None


@dataclass(frozen=True, slots=True)
class SendMessage:
    """``send_message``: publish an event to rooms the client is in."""

    event: str
    payload: Mapping[str, Any]
    rooms: tuple[str, ...]
    id: FrameId = None


@dataclass(frozen=True, slots=True)
class Typing:
    """``typing``: the client started or stopped typing in a room."""

    room: str
    state: bool
    id: FrameId = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """``cursor``: the client's cursor moved (coalesced per user and room)."""

    room: str
    position: Mapping[str, Any]
    id: FrameId = None


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    """``presence``: who is in a room (a page of them)."""

    room: str
    page_token: str = ""
    id: FrameId = None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """``history``: stored events of a room."""

    room: str
    since: Position | None = None
    limit: int = DEFAULT_HISTORY_LIMIT
    id: FrameId = None


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``: answered with ``pong``."""

    id: FrameId = None


ClientFrame = (
    Auth
    | JoinRoom
    | LeaveRoom
    | SendMessage
    | Typing
    | Cursor
    | PresenceQuery
    | HistoryQuery
    | Ping
)

# -- parsing -------------------------------------------------------------------


def decode(text: str | bytes) -> dict[str, Any]:
    """The JSON object of a frame.

    Raises:
        InvalidArgument: not JSON, or not an object.
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise InvalidArgument("frame: not valid JSON") from error
    if not isinstance(data, dict):
        raise InvalidArgument("frame: must be a JSON object")
    return data


def frame_id(data: Mapping[str, Any]) -> FrameId:
    """The frame's ``id`` to echo, or None when it has none (or a bad one)."""
    value = data.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        return None
    return value


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{key}: required, a non-empty string")
    return value


def _object(data: Mapping[str, Any], key: str, *, default: Any = None) -> dict[str, Any]:
    value = data.get(key, default)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{key}: must be a JSON object")
    return value


def _since(data: Mapping[str, Any]) -> Position | None:
    value = data.get("since")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument('since: must be an object like {"offset": 17, "epoch": "..."}')
    offset, epoch = value.get("offset", 0), value.get("epoch", "")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**64:
        raise InvalidArgument("since.offset: must be a whole number >= 0")
    if not isinstance(epoch, str) or len(epoch) > MAX_ID_LENGTH:
        raise InvalidArgument("since.epoch: must be a string")
    return Position(offset, epoch)


def _page_token(data: Mapping[str, Any]) -> str:
    value = data.get("page_token", "")
    if not isinstance(value, str) or len(value) > MAX_PAGE_TOKEN:
        raise InvalidArgument(
            f"page_token: must be the string a presence reply gave (at most {MAX_PAGE_TOKEN})"
        )
    return value


def _check_id(data: Mapping[str, Any]) -> FrameId:
    if "id" in data and frame_id(data) is None:
        raise InvalidArgument(
            f"id: must be a string of at most {MAX_ID_LENGTH} characters or a number"
        )
    return frame_id(data)


def parse(data: Mapping[str, Any]) -> ClientFrame:
    """The client frame ``data`` (from :func:`decode`) stands for.

    Unknown keys are ignored, so clients may send fields a later server
    understands.

    Raises:
        UnknownType: ``type`` names no frame of the protocol.
        InvalidArgument: a field is missing or malformed (the message names it).
    """
    kind = data.get("type")
    if not isinstance(kind, str):
        raise InvalidArgument("type: required, a string")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise UnknownType(f"type: {kind[:40]!r} is not a frame type (see docs/protocol.md)")
    frame: ClientFrame = parser(data, _check_id(data))
    return frame


def _parse_send(data: Mapping[str, Any], id_: FrameId) -> SendMessage:
    rooms = data.get("rooms")
    if isinstance(data.get("room"), str) and rooms is None:
        rooms = [data["room"]]
    if not isinstance(rooms, list) or not rooms or not all(isinstance(r, str) for r in rooms):
        raise InvalidArgument("rooms: required, a non-empty list of room names")
    return SendMessage(
        _text(data, "event"), _object(data, "payload", default={}), tuple(rooms), id_
    )


def _parse_typing(data: Mapping[str, Any], id_: FrameId) -> Typing:
    state = data.get("state")
    if not isinstance(state, bool):
        raise InvalidArgument("state: required, true or false")
    return Typing(_text(data, "room"), state, id_)


def _parse_history(data: Mapping[str, Any], id_: FrameId) -> HistoryQuery:
    limit = data.get("limit", DEFAULT_HISTORY_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise InvalidArgument(f"limit: must be a whole number from 1 to {MAX_HISTORY_LIMIT}")
    return HistoryQuery(_text(data, "room"), _since(data), limit, id_)


_PARSERS: dict[str, Callable[[Mapping[str, Any], FrameId], ClientFrame]] = {
    "auth": lambda data, id_: Auth(_text(data, "token"), id_),
    "join_room": lambda data, id_: JoinRoom(_text(data, "room"), _since(data), id_),
    "leave_room": lambda data, id_: LeaveRoom(_text(data, "room"), id_),
    "send_message": _parse_send,
    "typing": _parse_typing,
    "cursor": lambda data, id_: Cursor(_text(data, "room"), _object(data, "position"), id_),
    "presence": lambda data, id_: PresenceQuery(_text(data, "room"), _page_token(data), id_),
    "history": _parse_history,
    "ping": lambda data, id_: Ping(id_),
}

# -- building ------------------------------------------------------------------


def encode(frame: Mapping[str, Any]) -> bytes:
    """A server frame as JSON text (UTF-8)."""
    return orjson.dumps(frame)


def _with_id(frame: dict[str, Any], id_: FrameId) -> dict[str, Any]:
    if id_ is not None:
        frame["id"] = id_
    return frame


def error_frame(error: RoomcastError, id_: FrameId = None) -> dict[str, Any]:
    """``error``: the code and the client-safe message of ``error``."""
    return _with_id({"type": "error", "code": error.frame_code, "message": error.message}, id_)


def _json_value(value: Any) -> Any:
    """A Struct value as plain JSON data; whole numbers become integers."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, Struct):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, ListValue):
        return [_json_value(item) for item in value]
    return value


def _time(event: Event) -> str:
    stamp = datetime.fromtimestamp(event.time.seconds, UTC).replace(
        microsecond=event.time.nanos // 1000
    )
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sender(sender: Sender) -> dict[str, str]:
    fields = {
        "user_id": sender.user_id,
        "tenant_id": sender.tenant_id,
        "connection_id": sender.connection_id,
        "service": sender.service,
    }
    return {key: value for key, value in fields.items() if value}


def event_json(event: Event) -> dict[str, Any]:
    """An event as the ``event`` frame shows it (also in ``missed`` and ``history``)."""
    return {
        "type": "event",
        "room": event.room,
        "event": event.event,
        "payload": _json_value(event.payload),
        "offset": event.offset,
        "epoch": event.epoch,
        "id": event.id,
        "time": _time(event),
        "sender": _sender(event.sender),
    }


def encode_publication(publication: Publication) -> tuple[bytes, str]:
    """A publication as JSON text, and the connection it must skip.

    Events go to every member, their sender included; signals (presence,
    typing, cursor) go to the other members only, so their sending
    connection is returned to be skipped.
    """
    event = Event.FromString(publication.data)
    if not publication.signal:
        return encode(event_json(event)), ""
    user = _sender(event.sender)
    frame = {"type": event.event, "room": event.room, "user": user}
    frame.update(_json_value(event.payload))
    return encode(frame), event.sender.connection_id


def members_json(members: Iterable[Member]) -> list[dict[str, Any]]:
    """Presence entries as frames show them."""
    return [
        {
            key: value
            for key, value in (
                ("user_id", member.user_id),
                ("tenant_id", member.tenant or ""),
                ("connection_id", member.connection_id),
                ("joined_at", round(member.joined_at, 3)),
            )
            if value != ""
        }
        for member in members
    ]


def _events_within(events: Sequence[bytes], max_bytes: int) -> list[orjson.Fragment]:
    """The first of ``events`` as JSON that fit in ``max_bytes`` (at least one)."""
    fragments: list[orjson.Fragment] = []
    used = 0
    for data in events:
        text = orjson.dumps(event_json(Event.FromString(data)))
        used += len(text) + 1  # and a comma
        if fragments and used > max_bytes:
            break
        fragments.append(orjson.Fragment(text))
    return fragments


def room_joined_frame(
    joined: Joined, name: str, max_bytes: int, id_: FrameId = None
) -> tuple[dict[str, Any], int]:
    """``room_joined``: the room's position, its members, and what was missed.

    Args:
        joined: the join.
        name: the room's name as the client gave it.
        max_bytes: the reply's budget; missed events that do not fit follow
            in ``missed`` frames (``more``).
        id_: the request's id.

    Returns:
        The frame, and how many of ``joined.missed`` it carries.
    """
    presence = members_json(joined.members)
    room = {
        "type": "room_joined",
        "room": name,
        "offset": joined.position.offset,
        "epoch": joined.position.epoch,
        "presence": presence,
        "recovered": joined.recovered,
    }
    # Members are at most MAX_PRESENCE_LISTED: counted against the budget, not cut.
    used = len(encode(room))
    missed = _events_within(joined.missed, max(max_bytes - used, 0)) if joined.missed else []
    frame = {
        **room,
        **({"reason": joined.reason} if joined.reason else {}),
        "missed": missed,
        "more": joined.more or len(missed) < len(joined.missed),
    }
    return _with_id(frame, id_), len(missed)


def missed_frame(
    name: str, events: Sequence[bytes], more: bool, recovered: bool, reason: str, max_bytes: int
) -> tuple[dict[str, Any], int]:
    """``missed``: more of the events a join missed, after ``room_joined`` said ``more``.

    Returns:
        The frame, and how many of ``events`` it carries.
    """
    fragments = _events_within(events, max_bytes)
    frame: dict[str, Any] = {
        "type": "missed",
        "room": name,
        "events": fragments,
        "more": more or len(fragments) < len(events),
        "recovered": recovered,
    }
    if reason:
        frame["reason"] = reason
    return frame, len(fragments)


def history_frame(name: str, page: Page[bytes], max_bytes: int, id_: FrameId) -> dict[str, Any]:
    """``history``: stored events of a room, oldest first, about ``max_bytes`` of them."""
    events = _events_within(page.items, max_bytes)
    return _with_id(
        {
            "type": "history",
            "room": name,
            "events": events,
            "offset": page.top.offset,
            "epoch": page.top.epoch,
            "recovered": page.recovered,
            "more": page.more or len(events) < len(page.items),
        },
        id_,
    )


def member_size(member: Member) -> int:
    """A member's bytes in a ``presence`` frame."""
    return len(encode(members_json((member,))[0])) + 1


def presence_frame(
    name: str, members: Sequence[Member], next_page_token: str, id_: FrameId
) -> dict[str, Any]:
    """``presence``: a page of a room's members (the next page's token, if any)."""
    frame: dict[str, Any] = {"type": "presence", "room": name, "members": members_json(members)}
    if next_page_token:
        frame["next_page_token"] = next_page_token
    return _with_id(frame, id_)


def confirmed_frame(
    connection_id: str,
    user_id: str,
    tenant_id: str | None,
    roles: Iterable[str],
    joined: Sequence[Joined],
    heartbeat: float,
    expires_at: float,
) -> dict[str, Any]:
    """``connection.confirmed``: who the connection is, and the rooms it is in.

    ``positions`` gives each of those rooms' newest position, so a client
    that reconnects later can resume them with ``since`` like any room.
    """
    return {
        "type": "connection.confirmed",
        "connection_id": connection_id,
        "user_id": user_id,
        "tenant_id": tenant_id or "",
        "roles": sorted(roles),
        "rooms": [j.room.name for j in joined],
        "positions": {
            j.room.name: {"offset": j.position.offset, "epoch": j.position.epoch} for j in joined
        },
        "heartbeat": heartbeat,
        "expires_at": int(expires_at),
    }
