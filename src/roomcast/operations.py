"""The operators' verbs: what AdminService and GetMetrics do, over a node.

Listing rooms, reading and clearing alerts, disconnecting users, reporting
activity and reading metrics all answer the same first question — in which
tenant may this caller act? — so they live together, beside the node whose
state they read rather than in it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .activity import activity_payload
from .auth import Principal, Role
from .brokers import Broker, Published
from .errors import BrokerError, Forbidden, InvalidArgument
from .gate import encode_json
from .history import Position
from .hub import Hub
from .metrics import Alert, Collector
from .metrics.cluster import aggregate
from .metrics.collector import snapshot_json
from .monitor import Monitor
from .ports import Publish, Publishes
from .presence import Presence
from .rooms import Room, RoomName, TenantId, parse_segment
from .sessions import Sessions

__all__ = [
    "CONTROL",
    "DISCONNECT",
    "MAX_LISTED_ROOMS",
    "MAX_REASON",
    "OperatedNode",
    "Operations",
    "RoomSummary",
]

# Nodes tell each other what to do with events of this room. No client can
# name it: "roomcast" is no kind of room, so the policy refuses it, and
# patterns never match a room the policy does not cover.
CONTROL = Room.of(RoomName("roomcast.control"), None)
DISCONNECT = "control.disconnect"
MAX_LISTED_ROOMS = 10_000
MAX_REASON = 100

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room as ListRooms shows it."""

    room: Room
    members: int
    subscribers: int
    position: Position
    history_size: int


class OperatedNode(Publishes, Protocol):
    """What the operators' verbs use of the node.

    A protocol, not the node: the node builds its operations, and
    operations.py does not import node.py (``roomcast.node.Node`` is the one).
    """

    broker: Broker
    hub: Hub[Any]
    presence: Presence
    sessions: Sessions
    monitor: Monitor
    metrics: Collector

    def check_memory(self, what: str) -> None: ...

    async def command(self, kind: str, data: Mapping[str, Any]) -> None: ...


class Operations:
    """The operators' verbs over one node.

    Args:
        node: the node whose rooms, sessions and metrics they act on.
    """

    def __init__(self, node: OperatedNode) -> None:
        self.node = node

    def _scope(self, principal: Principal, tenant_id: str, what: str) -> TenantId | None:
        """The tenant an administrative call acts in, or None for every tenant.

        Platform-level callers (super admins, platform services) act anywhere
        and may name a tenant; a tenant's services and admins act in their own
        tenant only; nobody else may.

        Raises:
            Forbidden: naming ``what`` the caller may not do.
        """
        if principal.tenant is None:
            if not (principal.is_super_admin or principal.is_service):
                raise Forbidden(f"{what} is for services and admins")
            return TenantId(parse_segment(tenant_id, field_name="tenant_id")) if tenant_id else None
        if not (principal.is_service or principal.has(Role.TENANT_ADMIN)):
            raise Forbidden(f"{what} is for services and admins")
        if tenant_id and tenant_id != principal.tenant:
            raise Forbidden(f"tenant_id: callers of tenant {principal.tenant!r} act only in it")
        return principal.tenant

    def _check_platform(self, principal: Principal, what: str) -> None:
        if principal.tenant is not None or not (principal.is_super_admin or principal.is_service):
            raise Forbidden(
                f"{what} are for platform-level callers (super_admin, platform services)"
            )

    async def list_rooms(
        self, principal: Principal, prefix: str, tenant_id: str
    ) -> tuple[list[RoomSummary], bool]:
        """Rooms with history, members or subscribers, as the caller may see them.

        Returns:
            The rooms sorted by tenant and name, and whether the list was cut.
        """
        tenant = self._scope(principal, tenant_id, "listing rooms")
        self.node.check_memory("listing rooms")
        every_tenant = principal.tenant is None and not tenant_id
        stats = {s.room.key: s for s in await self.node.broker.rooms()}
        rooms = {s.room.key: s.room for s in stats.values()}
        rooms.update((room.key, room) for room in self.node.hub.rooms())
        rooms.update((key, Room.from_key(key)) for key in self.node.presence.room_keys())
        # Rooms whose only trace is a member on another node (no events, no
        # local interest): listed if a live member is counted below.
        elsewhere = {key for key in await self._shared_presence_rooms() if key not in rooms}
        rooms.update((key, Room.from_key(key)) for key in elsewhere)
        rooms.pop(CONTROL.key, None)  # the nodes' own room, no client's
        visible = sorted(
            (
                room
                for room in rooms.values()
                if (every_tenant or room.tenant == tenant) and room.name.startswith(prefix)
            ),
            key=lambda r: (r.tenant or "", r.name),
        )
        listed = visible[:MAX_LISTED_ROOMS]
        counts = await self._member_counts([room.key for room in listed])
        summaries = []
        for room in listed:
            if room.key in elsewhere and not counts.get(room.key):
                continue  # its members' entries expired (their node died)
            stat = stats.get(room.key)
            summaries.append(
                RoomSummary(
                    room,
                    counts.get(room.key, 0),
                    self.node.hub.subscriber_count(room),
                    stat.position if stat else Position(0, ""),
                    stat.history_size if stat else 0,
                )
            )
        return summaries, len(visible) > MAX_LISTED_ROOMS

    async def _shared_presence_rooms(self) -> list[str]:
        shared = self.node.broker.shared
        if shared is not None:
            try:
                return await shared.presence_rooms()
            except BrokerError as error:
                log.info("rooms with members elsewhere not listed: %s", error.message)
        return []

    async def _member_counts(self, room_keys: list[str]) -> Mapping[str, int]:
        shared = self.node.broker.shared
        if shared is not None:
            try:
                return await shared.presence_counts(room_keys)
            except BrokerError as error:
                log.info("member counts from this node only: %s", error.message)
        return {key: self.node.presence.member_count(key) for key in room_keys}

    async def disconnect_user(
        self, principal: Principal, user_id: str, tenant_id: str, connection_id: str, reason: str
    ) -> int:
        """Close a user's live connections (or one) with 4001, on every node.

        Returns:
            How many were closed on this node (the others close theirs).

        Services of the user's tenant, tenant admins of it, and platform-level
        callers (super admins and platform services) may.

        Raises:
            Forbidden: anyone else, or another tenant's caller.
            InvalidArgument: a malformed user id, tenant or reason.
        """
        if len(reason) > MAX_REASON:
            raise InvalidArgument(f"reason: longer than {MAX_REASON} characters")
        tenant = self._scope(principal, tenant_id, "disconnecting users")
        closed = self.node.sessions.disconnect_user(tenant, user_id, connection_id, reason)
        if self.node.broker.shared is not None:
            # The user's other connections may be on other nodes.
            await self.node.command(
                DISCONNECT,
                {
                    "tenant_id": tenant or "",
                    "user_id": user_id,
                    "connection_id": connection_id,
                    "reason": reason,
                },
            )
        return closed

    async def track_activity(
        self, principal: Principal, tenant_id: str, **report: Any
    ) -> Published:
        """Publish a backend's activity report as ``user.activity`` to the tenant's admins.

        Args:
            principal: the reporting service.
            tenant_id: the user's tenant (a tenant's service may leave it empty).
            report: the fields of :func:`~roomcast.activity.activity_payload`.

        Raises:
            RoomcastError: a bad field, or a caller that may not report.
        """
        if not principal.is_service:
            raise Forbidden("TrackActivity is for services")
        if principal.tenant is not None and tenant_id and tenant_id != principal.tenant:
            raise Forbidden(f"tenant_id: callers of tenant {principal.tenant!r} act only in it")
        tenant = principal.tenant or (
            parse_segment(tenant_id, field_name="tenant_id") if tenant_id else ""
        )
        if not tenant:
            raise InvalidArgument("tenant_id: required from a platform service")
        payload = activity_payload(tenant_id=tenant, **report)
        result = await self.node.publish(
            principal, Publish(f"tenant.{tenant}.admins", "user.activity", encode_json(payload))
        )
        self.node.metrics.counters.activities += 1
        return result

    async def metrics_payload(self, principal: Principal, *, cluster: bool) -> dict[str, Any]:
        """The latest metrics sample (a ``metrics.snapshot`` payload), for platform callers.

        Args:
            principal: the caller.
            cluster: aggregate every live node's latest sample (with a shared
                broker; a single node answers for itself).

        Raises:
            Forbidden: for callers of a tenant.
        """
        self._check_platform(principal, "metrics")
        own = snapshot_json(self.node.metrics.latest or self.node.monitor.sample())
        shared = self.node.broker.shared
        if not cluster or shared is None:
            return {**own, "nodes": [own["node_id"]]}
        try:
            records = await shared.nodes()
        except BrokerError as error:
            log.info("cluster metrics from this node only: %s", error.message)
            records = []
        payloads = {r.node_id: orjson.loads(r.snapshot) for r in records}
        payloads[own["node_id"]] = own  # fresher than its last heartbeat
        return aggregate(list(payloads.values()))

    def alerts(self, principal: Principal, tenant_id: str) -> tuple[list[Alert], list[Alert]]:
        """Firing and recent alerts the caller may see.

        Platform-level callers see every alert (or one tenant's, naming it);
        a tenant's admins and services see their tenant's only.

        Raises:
            Forbidden: for tenant users without the admin or service role.
        """
        tenant = self._scope(principal, tenant_id, "reading alerts")

        def visible(alert: Alert) -> bool:
            return tenant is None or alert.tenant_id == tenant

        alerts = self.node.monitor.alerts
        return (
            [a for a in alerts.firing() if visible(a)],
            [a for a in alerts.recent() if visible(a)],
        )

    def clear_alerts(self, principal: Principal, include_firing: bool) -> int:
        """Empty the alert log; platform-level callers only."""
        self._check_platform(principal, "alert logs")
        return self.node.monitor.alerts.clear(include_firing=include_firing)
