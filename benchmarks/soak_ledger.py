"""The soak benchmark's key figure: did every acknowledged event reach every member, once?

Pure: acknowledgements and what each member received in, figures out.

An event is owed to a well-behaved client for each stretch of its time in
the event's room (:class:`~soak_plan.Segment`) whose range holds the
event's offset: after the offset the stretch started from (the room's
position when it joined, or the ``since`` it resumed from when the server
said ``recovered``), up to the stretch's bound. The bound is the newest
offset the client received there (the server sends a room's live events in
offset order, so every earlier one is owed too), or, if higher, the newest
offset acknowledged before the client's last ``ping`` there, less the
broker's grace: an event acknowledged before the client asked has been
fanned out before its ``pong`` (the memory broker delivers in the
publishing call; through Redis, the node's listener may lag the
acknowledgement, hence the grace). A client still in the room at the end
owes every event of the room after its start. Stretches of one client in
one room are united, so an event lost on one connection but recovered
through a resume on the next counts as delivered.

A Subscribe stream opened before the first publish owes every event of the
rooms its patterns cover.

Missing: owed and never received. Duplicate: received more than once,
except where the protocol allows it (a rejoin's ``missed`` repeating
events the connection already had — the client counts those apart).
Unacknowledged losses: offsets below one the client received, in a stretch,
that it never got although nobody acknowledged them (events of stalled or
abusive clients, say): stored events all the same.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from soak_plan import Ack, Member, RoomKey

from roomcast.rooms import parse_pattern

__all__ = ["Figures", "check"]


@dataclass
class Figures:
    """What :func:`check` found, for one kind of member (or all)."""

    members: int = 0
    owed: int = 0  # (event, member) pairs
    delivered: int = 0  # owed pairs delivered
    resumed: int = 0  # of which through a resume (missed)
    missing: int = 0
    duplicates: int = 0
    overlaps: int = 0  # repeats the protocol allows (rejoin of a joined room)
    unacknowledged_lost: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class _Room:
    """A room's acknowledged events: offsets sorted, and acknowledgement times."""

    acks: dict[int, Ack] = field(default_factory=dict)
    offsets: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # sorted
    highest: list[int] = field(default_factory=list)  # newest offset acknowledged by times[i]

    def seal(self) -> None:
        self.offsets = sorted(self.acks)
        timeline = sorted((a.time, a.offset) for a in self.acks.values())
        self.times = [t for t, _ in timeline]
        top = 0
        for _, offset in timeline:
            top = max(top, offset)
            self.highest.append(top)

    def acknowledged_by(self, when: float) -> int:
        """The newest offset acknowledged at or before ``when`` (0: none)."""
        index = bisect.bisect_right(self.times, when)
        return self.highest[index - 1] if index else 0

    def between(self, start: int, bound: float) -> list[int]:
        """Acknowledged offsets in ``(start, bound]``."""
        low = bisect.bisect_right(self.offsets, start)
        high = len(self.offsets) if math.isinf(bound) else bisect.bisect_right(self.offsets, bound)
        return self.offsets[low:high]


def _rooms(acks: Iterable[Ack]) -> tuple[dict[RoomKey, _Room], list[str]]:
    rooms: dict[RoomKey, _Room] = {}
    conflicts = []
    for ack in acks:
        room = rooms.setdefault(ack.key, _Room())
        known = room.acks.get(ack.offset)
        if known is None:
            room.acks[ack.offset] = ack
            continue
        if ack.id and known.id and known.id != ack.id:
            conflicts.append(f"{ack.key} offset {ack.offset}: {known.id} and {ack.id}")
        # The earliest acknowledgement says when the event was out; keep an id.
        first, other = (ack, known) if ack.time < known.time else (known, ack)
        room.acks[ack.offset] = Ack(first.key, first.offset, first.id or other.id, first.time,
                                    first.source)  # fmt: skip
    for room in rooms.values():
        room.seal()
    return rooms, conflicts


def check(
    acks: Iterable[Ack], members: Iterable[Member], grace: float, started: float = 0.0
) -> tuple[dict[str, Figures], list[str]]:
    """Figures per kind of member (``ws``, ``grpc``), and acknowledgements that conflict.

    Args:
        acks: every acknowledgement of the run.
        members: the well-behaved clients and the Subscribe streams.
        grace: seconds the broker may take from acknowledging an event to
            handing it to the node's connections.
        started: when the run started (``time.monotonic()``), for the examples.
    """
    rooms, conflicts = _rooms(acks)
    by_name: dict[tuple[str, str], set[str]] = {}  # (scope, room) -> epochs
    for scope, name, epoch in rooms:
        by_name.setdefault((scope, name), set()).add(epoch)
    figures: dict[str, Figures] = {}
    for member in members:
        found = figures.setdefault(member.kind, Figures())
        found.members += 1
        found.overlaps += member.overlaps
        owed = _owed(member, rooms, by_name, grace, found)
        for key, offsets in owed.items():
            counts: Mapping[int, int] = member.received.get(key, {})
            resumed = member.resumed.get(key, set())
            for offset in sorted(offsets):
                found.owed += 1
                if offset in counts:
                    found.delivered += 1
                    found.resumed += offset in resumed
                else:
                    found.missing += 1
                    if len(found.examples) < 20:
                        ack = rooms[key].acks[offset]
                        found.examples.append(
                            f"{member.name} never got {key} offset {offset}"
                            f" ({ack.source}, acknowledged at {ack.time - started:.2f} s)"
                        )
        for key, counts in member.received.items():
            for offset, count in counts.items():
                if count > 1:
                    found.duplicates += count - 1
                    if len(found.examples) < 20:
                        found.examples.append(f"{member.name} got {key} offset {offset} x{count}")
    return figures, conflicts


def _owed(
    member: Member,
    rooms: dict[RoomKey, _Room],
    by_name: dict[tuple[str, str], set[str]],
    grace: float,
    found: Figures,
) -> dict[RoomKey, set[int]]:
    owed: dict[RoomKey, set[int]] = {}
    gaps: dict[RoomKey, set[int]] = {}
    if member.patterns is not None:
        patterns, tenant = member.patterns
        compiled = [parse_pattern(p) for p in patterns]
        for key, held in rooms.items():
            scope, name, _ = key
            if (tenant is None or scope in (tenant, "")) and any(
                pattern.matches(name) for pattern in compiled
            ):
                owed[key] = set(held.offsets)
        return owed
    for segment in member.segments:
        scope, name, epoch = segment.key
        # A room with no event yet when joined has no epoch: its first one.
        keys = (
            [segment.key] if epoch else [(scope, name, e) for e in by_name.get((scope, name), ())]
        )
        for key in keys:
            received: Mapping[int, int] = member.received.get(key, {})
            top = segment.top
            room = rooms.get(key)
            if math.isinf(segment.end) and segment.end > 0:
                bound: float = math.inf
            elif room is not None and not math.isinf(segment.end):
                bound = max(top, room.acknowledged_by(segment.end - grace))
            else:
                bound = top
            if room is not None:
                owed.setdefault(key, set()).update(room.between(segment.start, bound))
            acknowledged = room.acks if room is not None else {}
            gaps.setdefault(key, set()).update(
                offset
                for offset in range(segment.start + 1, top + 1)
                if offset not in received and offset not in acknowledged
            )
    found.unacknowledged_lost += sum(len(offsets) for offsets in gaps.values())
    return owed
