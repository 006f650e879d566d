"""The node watching itself: samples, alerts, and the rooms they stream into.

Every ``metrics_interval`` the monitor takes a metrics snapshot, judges it
against the alert rules, and publishes — as the server itself, a platform
service — ``metrics.snapshot`` to ``performance.dashboard`` and
``platform.health``, and each alert that fired or resolved as
``platform.alert`` to ``platform.health`` (tenant alerts also to
``tenant.{t}.admins``). Any authorised WebSocket member or gRPC subscriber
can follow them; ``GetMetrics`` and ``/metrics`` read the same figures.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from .auth import Principal, Role
from .brokers import Broker
from .config import Settings
from .errors import BrokerError, RoomcastError
from .gate import encode_json
from .hub import Hub
from .metrics import (
    Alert,
    Alerts,
    Collector,
    Gauges,
    RoomSize,
    Snapshot,
    Thresholds,
    default_rules,
)
from .metrics.collector import snapshot_json
from .ports import Publish, Publishes
from .presence import Presence
from .rooms import Room
from .sessions import Sessions

__all__ = ["SERVER", "Monitor", "MonitoredNode", "alert_json"]

log = logging.getLogger(__name__)

#: The principal the server publishes as: a platform service named "roomcast".
SERVER = Principal("roomcast", None, frozenset({Role.SERVICE}), math.inf)
LARGEST_ROOMS = 10
# Alert events kept while the broker is down (the oldest are dropped first).
MAX_UNSENT_ALERTS = 100
# A broker that does not answer a health check within this long is unreachable.
HEALTH_TIMEOUT = 2.0


def alert_json(alert: Alert, node_id: str) -> dict[str, Any]:
    """An alert as the payload of a ``platform.alert`` event."""
    payload: dict[str, Any] = {
        "id": alert.id,
        "rule": alert.rule,
        "severity": str(alert.severity),
        "state": "firing" if alert.firing else "resolved",
        "value": alert.value,
        "threshold": alert.threshold,
        "started_at": alert.started_at,
        "message": alert.message,
        "node_id": node_id,
    }
    if alert.tenant_id:
        payload["tenant_id"] = alert.tenant_id
    if alert.resolved_at is not None:
        payload["resolved_at"] = alert.resolved_at
    return payload


class MonitoredNode(Publishes, Protocol):
    """What the monitor reads of its node, and how it publishes.

    A protocol, not the node: the node builds its monitor, and monitor.py
    does not import node.py (``roomcast.node.Node`` is the one it watches).
    """

    settings: Settings
    presence: Presence
    hub: Hub[Any]
    sessions: Sessions
    broker: Broker
    metrics: Collector
    streams: int
    closing: bool


class Monitor:
    """Samples the node, raises alerts, and publishes both.

    Args:
        node: the node to watch.
    """

    def __init__(self, node: MonitoredNode) -> None:
        settings = node.settings
        self.node = node
        self.alerts = Alerts(
            default_rules(
                Thresholds(
                    cpu_percent=settings.alert_cpu_percent,
                    cpu_samples=settings.alert_cpu_samples,
                    memory_percent=settings.alert_memory_percent,
                    latency_p99_ms=settings.alert_latency_p99_ms,
                    error_rate=settings.alert_error_rate,
                    max_connections=settings.alert_max_connections,
                    tenant_connections=settings.alert_tenant_connections,
                )
            ),
            id_prefix=settings.node_id,
        )
        self.broker_healthy = True
        self.broker_rtt = 0.0
        # Alert events the broker could not take yet, oldest first: an alert
        # that fires because the broker is down is published once it is back.
        self._unsent: deque[Publish] = deque(maxlen=MAX_UNSENT_ALERTS)

    def gauges(self) -> Gauges:
        """What the node holds now."""
        node = self.node
        presence = node.presence
        room_keys = set(presence.room_keys()) | {r.key for r in node.hub.rooms()}
        largest = heapq.nlargest(LARGEST_ROOMS, presence.room_keys(), key=presence.member_count)
        return Gauges(
            connections=len(node.sessions),
            connections_by_tenant={
                tenant or "": count for tenant, count in node.sessions.by_tenant().items()
            },
            subscriptions=node.streams,
            rooms=len(room_keys),
            largest_rooms=[
                RoomSize(room.name, room.tenant or "", presence.member_count(key))
                for key in largest
                for room in (Room.from_key(key),)
            ],
            firing_alerts=len(self.alerts.firing()),
            broker_rtt=self.broker_rtt,
            broker_healthy=self.broker_healthy,
        )

    def sample(self) -> Snapshot:
        """Take a snapshot now (without publishing it)."""
        return self.node.metrics.sample(self.gauges())

    async def run(self) -> None:
        """Sample, judge and publish every interval, until cancelled or the node closes."""
        while not self.node.closing:
            await asyncio.sleep(self.node.settings.metrics_interval)
            await self.tick()

    async def tick(self) -> None:
        """One round: check the broker, sample, judge, publish."""
        started = time.perf_counter()
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation
            # that arrives as the check completes, and the node, closing,
            # would wait for this task forever.
            async with asyncio.timeout(HEALTH_TIMEOUT):
                healthy = await self.node.broker.healthy()
        except (TimeoutError, RoomcastError, OSError):
            healthy = False
        self.broker_healthy, self.broker_rtt = healthy, time.perf_counter() - started
        snapshot = self.sample()
        changed = self.alerts.evaluate(snapshot, time.time())
        payload = snapshot_json(snapshot)
        node_id = self.node.settings.node_id
        payload["alerts"] = [alert_json(alert, node_id) for alert in self.alerts.firing()]
        shared = self.node.broker.shared
        if shared is not None:
            try:
                await shared.heartbeat(orjson.dumps(payload))
            except RoomcastError as error:
                log.info("heartbeat not written: %s", error.message)
        await self.publish_event("performance.dashboard", "metrics.snapshot", payload)
        await self.publish_event("platform.health", "metrics.snapshot", payload)
        for alert in changed:
            log.warning(
                "alert %s %s: %s",
                alert.rule,
                "fired" if alert.firing else "resolved",
                alert.message,
            )
            data = alert_json(alert, self.node.settings.node_id)
            # Keyed by alert and state: a retry after a timeout publishes once.
            key = f"{alert.id}:{data['state']}"
            encoded = encode_json(data)
            self._unsent.append(
                Publish("platform.health", "platform.alert", encoded, idempotency_key=key)
            )
            if alert.tenant_id:
                room = f"tenant.{alert.tenant_id}.admins"
                self._unsent.append(
                    Publish(room, "platform.alert", encoded, alert.tenant_id, idempotency_key=key)
                )
        await self._send_alerts()

    async def _send_alerts(self) -> None:
        """Publish the alert events in order; stop at the first the broker refuses."""
        while self._unsent:
            try:
                await self.node.publish(SERVER, self._unsent[0])
            except BrokerError as error:
                log.info(
                    "alert events wait for the broker (%d): %s", len(self._unsent), error.message
                )
                return
            except RoomcastError as error:  # never publishable (draining, a closed room)
                log.info("alert event dropped: %s", error.message)
            self._unsent.popleft()

    async def publish_event(
        self, room: str, event: str, data: Mapping[str, Any], tenant_id: str = ""
    ) -> None:
        """Publish an event as the server itself; a failure is logged, not raised."""
        try:
            await self.node.publish(SERVER, Publish(room, event, encode_json(data), tenant_id))
        except RoomcastError as error:
            # A broker outage is itself an alert; the next tick tries again.
            log.info("could not publish %s to %s: %s", event, room, error.message)
