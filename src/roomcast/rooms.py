"""Room names, room patterns, and the identity of a room inside its tenant.

Grammar (the public contract, also in docs/protocol.md and the .proto)::

    name     = segment *( "." segment )          ; at most 200 characters
    segment  = 1*( ALPHA / DIGIT / "_" / "-" )
    pattern  = pseg *( "." pseg ) [ "." "**" ] / "**"
    pseg     = segment / "*"

``*`` matches exactly one whole segment; a final ``**`` matches one or more
further segments. Neither matches part of a segment: ``chat.*`` matches
``chat.lobby`` but not ``chat`` or ``chat.lobby.old``; ``tenant.acme.**``
matches ``tenant.acme.users`` and ``tenant.acme.a.b``.

A :class:`Room` is a name placed in a tenant. ``chat.lobby`` of tenant acme
and ``chat.lobby`` of tenant globex are two rooms with two keys; rooms that
belong to no tenant (platform, performance, global) are keyed by name alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NewType

from .errors import InvalidArgument, InvalidRoom

__all__ = [
    "MAX_NAME_LENGTH",
    "EventName",
    "Room",
    "RoomName",
    "RoomPattern",
    "TenantId",
    "is_pattern",
    "parse_event_name",
    "parse_pattern",
    "parse_room_name",
    "parse_segment",
]

RoomName = NewType("RoomName", str)
EventName = NewType("EventName", str)
TenantId = NewType("TenantId", str)

MAX_NAME_LENGTH = 200
MAX_EVENT_NAME_LENGTH = 100
_SEGMENT = r"[A-Za-z0-9_-]+"
_NAME_RE = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_SEGMENT_RE = re.compile(_SEGMENT)
# The separator between tenant and name in a room key; it cannot occur in a
# name, so keys of different tenants never collide.
_KEY_SEPARATOR = ":"


def _describe(text: str) -> str:
    """A short, printable rendering of client input for error messages."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    return repr(shown)


def parse_room_name(text: str, *, field_name: str = "room") -> RoomName:
    """Validate a room name.

    Raises:
        InvalidRoom: naming the field and what is wrong.
    """
    if not text:
        raise InvalidRoom(f"{field_name}: a room name is required")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidRoom(
            f"{field_name}: room name is {len(text)} characters; the limit is {MAX_NAME_LENGTH}"
        )
    if _NAME_RE.fullmatch(text) is None:
        raise InvalidRoom(
            f"{field_name}: {_describe(text)} is not a room name "
            "(dot-separated segments of A-Z a-z 0-9 _ -)"
        )
    return RoomName(text)


def parse_event_name(text: str, *, field_name: str = "event") -> EventName:
    """Validate an event name such as ``user.notification``.

    Raises:
        InvalidArgument: naming the field and what is wrong.
    """
    if not text:
        raise InvalidArgument(f"{field_name}: an event name is required")
    if len(text) > MAX_EVENT_NAME_LENGTH:
        raise InvalidArgument(
            f"{field_name}: event name is {len(text)} characters; "
            f"the limit is {MAX_EVENT_NAME_LENGTH}"
        )
    if _NAME_RE.fullmatch(text) is None:
        raise InvalidArgument(
            f"{field_name}: {_describe(text)} is not an event name "
            "(dot-separated segments of A-Z a-z 0-9 _ -)"
        )
    return EventName(text)


def parse_segment(text: str, *, field_name: str) -> str:
    """Validate one segment (a tenant or user id that is placed in room names).

    Raises:
        InvalidArgument: naming the field.
    """
    if not text or len(text) > 64 or _SEGMENT_RE.fullmatch(text) is None:
        raise InvalidArgument(f"{field_name}: must be 1-64 characters of A-Z a-z 0-9 _ -")
    return text


def is_pattern(text: str) -> bool:
    """Whether ``text`` uses the pattern wildcards ``*`` or ``**``."""
    return "*" in text


@dataclass(frozen=True, slots=True)
class RoomPattern:
    """A compiled room pattern. Use :func:`parse_pattern` to make one."""

    text: str
    _regex: re.Pattern[str] = field(repr=False, compare=False)

    def matches(self, name: str) -> bool:
        """Whether the room name ``name`` matches this pattern."""
        return self._regex.fullmatch(name) is not None

    @property
    def literal_prefix(self) -> str:
        """The part before the first wildcard, for cheap pre-filtering."""
        return self.text.split("*", 1)[0]


def parse_pattern(text: str, *, field_name: str = "rooms") -> RoomPattern:
    """Validate and compile a room pattern.

    Raises:
        InvalidRoom: naming the field, when the pattern breaks the grammar.
    """
    if not text:
        raise InvalidRoom(f"{field_name}: a room name or pattern is required")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidRoom(
            f"{field_name}: pattern is {len(text)} characters; the limit is {MAX_NAME_LENGTH}"
        )
    segments = text.split(".")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**" and last:
            parts.append(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
        elif segment == "*":
            parts.append(_SEGMENT)
        elif _SEGMENT_RE.fullmatch(segment):
            parts.append(re.escape(segment))
        else:
            where = "only as the last segment" if segment == "**" else "only as a whole segment"
            raise InvalidRoom(
                f"{field_name}: {_describe(text)} is not a room pattern "
                f"('*' and '**' may stand {where}; other segments use A-Z a-z 0-9 _ -)"
            )
    return RoomPattern(text, re.compile(r"\.".join(parts)))


@dataclass(frozen=True, slots=True)
class Room:
    """A room: a name placed in a tenant (or in no tenant).

    Attributes:
        name: the name callers use.
        tenant: the owning tenant, or None for rooms that belong to no tenant.
        key: the unique internal identity used by the hub and the brokers.
    """

    name: RoomName
    tenant: TenantId | None
    key: str

    @classmethod
    def of(cls, name: RoomName, tenant: TenantId | None) -> Room:
        """The room ``name`` of ``tenant``."""
        key = name if tenant is None else f"{tenant}{_KEY_SEPARATOR}{name}"
        return cls(name, tenant, key)

    @classmethod
    def from_key(cls, key: str) -> Room:
        """Rebuild a room from its key (for rooms read back from a broker)."""
        tenant, separator, name = key.rpartition(_KEY_SEPARATOR)
        return cls(RoomName(name), TenantId(tenant) if separator else None, key)
