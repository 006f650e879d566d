"""What nodes share besides events: room presence and the node registry.

A broker that connects several nodes (Redis) offers a :class:`SharedState`;
the embedded memory broker offers none, and a node's own bookkeeping is
then the whole truth.

Presence: each room's members are kept per connection with an expiry that
the owning node refreshes; entries of a node that died stop counting when
they expire (``presence_ttl``), whoever reads them. Nodes register
themselves the same way, with their latest metrics snapshot.

The record formats are pure functions here, so they are tested without
Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..presence import ConnectionId, Member
from ..rooms import TenantId

__all__ = ["NodeRecord", "SharedState", "decode_member", "encode_member"]

# Stands for "no tenant" in a record (tenants are segments: never "-").
_NO_TENANT = "-"


def encode_member(member: Member, node_id: str, expires_ms: int) -> str:
    """A presence record: ``<expires ms> <node> <joined at> <tenant> <user>``.

    Node ids, tenants and users never hold a space (segments and generated
    ids), so the record splits back unambiguously.
    """
    tenant = member.tenant or _NO_TENANT
    return f"{expires_ms} {node_id} {member.joined_at:.3f} {tenant} {member.user_id}"


def decode_member(connection_id: str, record: str) -> tuple[Member, str, int] | None:
    """The member, its node and its expiry (ms) from a record; None if malformed."""
    parts = record.split(" ")
    if len(parts) != 5:
        return None
    expires, node_id, joined_at, tenant, user_id = parts
    try:
        member = Member(
            ConnectionId(connection_id),
            user_id,
            None if tenant == _NO_TENANT else TenantId(tenant),
            float(joined_at),
        )
        return member, node_id, int(expires)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A registered node and what it last reported."""

    node_id: str
    seen_at: float
    snapshot: bytes  # its latest metrics.snapshot payload, JSON


class SharedState(Protocol):
    """Presence and node registry shared by every node of a cluster."""

    async def presence_join(self, room_key: str, member: Member) -> None:
        """Record ``member`` in a room (valid for ``presence_ttl``)."""

    async def presence_leave(self, room_key: str, connection_id: str) -> None:
        """Take a connection out of a room's presence."""

    async def presence_refresh(self, entries: Sequence[tuple[str, Member]]) -> None:
        """Extend this node's entries (room key, member) by another ``presence_ttl``."""

    async def presence_members(self, room_key: str) -> list[Member]:
        """A room's live members on every node, oldest first."""

    async def presence_counts(self, room_keys: Sequence[str]) -> Mapping[str, int]:
        """How many live members each room has, on every node."""

    async def presence_rooms(self) -> list[str]:
        """Keys of the rooms that have presence entries on any node (some may have expired)."""

    async def heartbeat(self, snapshot: bytes) -> None:
        """Register this node (for ``node_ttl``) with its latest snapshot."""

    async def nodes(self) -> list[NodeRecord]:
        """The live nodes."""
