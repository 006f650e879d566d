"""What the client hands back and takes in: small frozen values, not wire messages.

The generated messages in ``roomcast_client.v1`` mirror the ``.proto`` files
field by field; these values are what application code wants instead: a
payload as a ``dict``, a position as one value, a refusal as an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

__all__ = [
    "Alert",
    "Alerts",
    "Event",
    "Gap",
    "JSONValue",
    "Position",
    "PublishItem",
    "Published",
    "Sender",
    "Tracked",
]

JSONValue: TypeAlias = (
    "bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
)
"""What a payload may hold: JSON, as ``google.protobuf.Struct`` carries it."""


@dataclass(frozen=True, slots=True)
class Position:
    """A position in a room's history: the last event seen there.

    Offsets count stored events from 1; offsets of one epoch never compare
    with offsets of another. ``Position(0, "")`` means "before the room's
    first event".
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Sender:
    """Who published an event, as the server authenticated them."""

    user_id: str
    tenant_id: str = ""
    connection_id: str = ""
    service: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a room.

    Attributes:
        id: The server's id for the event.
        room: The room's name, without tenant prefix.
        event: The event name, for example ``"user.notification"``.
        payload: The application data. Numbers come back as ``float``:
            ``google.protobuf.Struct`` carries every number as a double.
        offset: Position in the room's history; 0 for an event kept out of
            history (``skip_history``), which is delivered live only.
        epoch: Identity of the room's history.
        time: When the server accepted the event (UTC).
        sender: Who published it.
        tenant_id: The room's tenant; empty for rooms of no tenant.
    """

    id: str
    room: str
    event: str
    payload: dict[str, Any]
    offset: int
    epoch: str
    time: datetime
    sender: Sender
    tenant_id: str = ""

    @property
    def position(self) -> Position:
        """Where this event sits in its room; pass it as ``since`` to resume after it."""
        return Position(self.offset, self.epoch)


@dataclass(frozen=True, slots=True)
class Gap:
    """Events of a room were lost and will not be delivered.

    A subscription yields a ``Gap`` where the server answered a resume with
    ``recovered=false`` (its history was reset, or no longer reaches back),
    or where the client could not ask to resume a room at all. Reload the
    room's state from your own source of truth; the events that follow are
    after ``position``.

    Attributes:
        room: The room, as the events name it.
        tenant_id: The room's tenant; empty for rooms of no tenant.
        position: The room's position from which delivery goes on.
        reason: Why the events were lost, in the server's words where it gave them.
    """

    room: str
    tenant_id: str
    position: Position
    reason: str


@dataclass(frozen=True, slots=True)
class Published:
    """Where a published event landed.

    Attributes:
        offset: The event's position in its room; 0 when kept out of history.
        epoch: The room's history epoch.
        id: The event's id.
        duplicate: True when the idempotency key was seen before: nothing new
            was published, and these are the first call's values.
    """

    offset: int
    epoch: str
    id: str
    duplicate: bool = False

    @property
    def position(self) -> Position:
        """The event's position."""
        return Position(self.offset, self.epoch)


@dataclass(frozen=True, slots=True)
class PublishItem:
    """One event of a ``publish_batch`` call; the fields are those of ``publish``."""

    room: str
    event: str
    payload: Mapping[str, JSONValue] = field(default_factory=dict)
    tenant_id: str | None = None
    idempotency_key: str | None = None
    skip_history: bool = False


@dataclass(frozen=True, slots=True)
class Tracked:
    """An activity report that ``track_user_activity`` recorded.

    Attributes:
        id: The id of the ``user.activity`` event the server published.
        offset: Its position in ``tenant.{tenant_id}.admins``.
    """

    id: str
    offset: int


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: a threshold rule that a metric of the platform crossed.

    Attributes:
        id: Unique id of this firing.
        rule: The rule, for example ``"cpu_high"`` or ``"tenant_connections_high"``.
        severity: ``"warning"`` or ``"critical"``.
        state: ``"firing"`` (the condition holds) or ``"resolved"``.
        value: The metric's value when the alert last changed state.
        threshold: The rule's threshold.
        started_at: When it started firing (UTC).
        resolved_at: When it resolved; ``None`` while it fires.
        tenant_id: The tenant of a tenant-specific alert; empty for platform alerts.
        message: A sentence for people.
        node_id: The node that raised it.
    """

    id: str
    rule: str
    severity: str
    state: str
    value: float
    threshold: float
    started_at: datetime
    resolved_at: datetime | None
    tenant_id: str
    message: str
    node_id: str


@dataclass(frozen=True, slots=True)
class Alerts:
    """What ``RoomcastClient.alerts`` returns.

    Attributes:
        firing: The alerts firing now, oldest first.
        recent: The alert log (fired and resolved), newest first; at most 200.
    """

    firing: tuple[Alert, ...]
    recent: tuple[Alert, ...]
