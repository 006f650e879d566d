"""The security monitor's shell: both ports report here, events go out as the server.

The gRPC shell (``rpc/calls.py``) and the WebSocket shell (``bridge/server.py``)
report each failed authentication and each WebSocket connection with the
client's address; this module asks the pure trackers what that means and
publishes, as the server itself (:meth:`Monitor.publish_event`):

- ``security.alert`` (``type: failed_login``) to ``platform.security``;
- ``security.new_location`` to ``platform.security`` and to the user's own
  ``user.{u}.private`` (in the user's tenant).

State is per node and in memory (docs/operations.md#security-monitoring):
each node of a cluster counts the failures and networks it sees itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ..auth import Principal
from ..metrics import Collector
from ..monitor import Monitor
from .addresses import IPAddress, TrustedProxies, parse_networks
from .geoip import GeoIP
from .locations import DAY, NewLocations
from .logins import FailedLogins, claimed_subject

__all__ = ["SECURITY_ROOM", "SecurityWatch", "WatchSettings", "WatchedNode"]

log = logging.getLogger(__name__)

SECURITY_ROOM = "platform.security"


class WatchSettings(Protocol):
    """What the watch reads of the node's settings (``config.Settings`` has it).

    A protocol, not ``Settings`` itself: ``config`` imports ``security``
    (to check ``trusted_proxies``), so ``security`` must not import ``config``.
    """

    @property
    def trusted_proxies(self) -> str: ...
    @property
    def failed_login_limit(self) -> int: ...
    @property
    def failed_login_window(self) -> float: ...
    @property
    def new_location_days(self) -> float: ...
    @property
    def security_max_tracked(self) -> int: ...
    @property
    def geoip_database(self) -> Path | None: ...


class _Named(Protocol):
    @property
    def node_id(self) -> str: ...


class WatchedNode(Protocol):
    """What the watch uses of the node it reports for: its id, counters and monitor.

    A protocol, not the node: the node builds its watch, and watch.py does
    not import node.py (``roomcast.node.Node`` is the one).
    """

    @property
    def settings(self) -> _Named: ...
    @property
    def metrics(self) -> Collector: ...
    @property
    def monitor(self) -> Monitor: ...


class SecurityWatch:
    """A node's failed-login and new-location tracking.

    The node owns it (``node.security``); methods that count or publish
    take the node, so the watch holds no reference back to it.

    Args:
        settings: the node's settings (``failed_login_*``,
            ``new_location_days``, ``security_max_tracked``,
            ``trusted_proxies``, ``geoip_database``).
    """

    def __init__(self, settings: WatchSettings) -> None:
        self.proxies = TrustedProxies(parse_networks(settings.trusted_proxies))
        self.logins = FailedLogins(
            limit=settings.failed_login_limit,
            window=settings.failed_login_window,
            max_tracked=settings.security_max_tracked,
        )
        self.locations = NewLocations(
            horizon=settings.new_location_days * DAY, max_users=settings.security_max_tracked
        )
        self.geoip_database = settings.geoip_database
        self.geoip: GeoIP | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        """Open the GeoIP database, when one is configured (at start).

        Raises:
            ConfigError: it cannot be read (the start is refused).
        """
        if self.geoip_database is not None and self.geoip is None:
            self.geoip = GeoIP.open(self.geoip_database)

    def close(self) -> None:
        """Release the GeoIP database."""
        if self.geoip is not None:
            self.geoip.close()
            self.geoip = None

    def client_address(self, peer: IPAddress | None, forwarded: Iterable[str]) -> IPAddress | None:
        """The client's address: the peer, or whom a trusted proxy forwards for."""
        return self.proxies.client(peer, forwarded)

    def failed(self, node: WatchedNode, address: IPAddress | None, token: str | None) -> None:
        """Count a failed authentication; alert when an address fails too often.

        Args:
            node: the node (for its counters and to publish).
            address: the client's address, if known.
            token: the token that failed, if any: only the subject it
                claims is read, and the token is neither kept nor logged.
        """
        node.metrics.counters.auth_failures += 1
        alert = self.logins.record(address, claimed_subject(token), time.time())
        if alert is None:
            return
        log.warning(
            "security alert: %d failed authentications from %s within %gs",
            alert.attempts,
            alert.ip_address,
            alert.window,
        )
        payload = alert.payload() | {"node_id": node.settings.node_id}
        self._publish(node, SECURITY_ROOM, "security.alert", payload)

    def connected(self, node: WatchedNode, principal: Principal, address: IPAddress | None) -> None:
        """Note a WebSocket connection; announce a new location.

        Args:
            node: the node (to publish).
            principal: who connected (with a verified token).
            address: from where, if known.
        """
        if address is None:
            return
        user = (principal.tenant or "", principal.subject)
        seen = self.locations.observe(user, address, time.time())
        if seen is None:
            return
        payload = seen.payload() | {"node_id": node.settings.node_id}
        if self.geoip is not None:
            place = self.geoip.locate(seen.ip_address)
            if place is not None:
                payload |= place.fields()
        log.info("new location for %s/%s: %s", user[0], user[1], seen.network)
        self._publish(node, SECURITY_ROOM, "security.new_location", payload)
        if principal.tenant is not None:
            # Platform-level principals have no private room to tell.
            room = f"user.{principal.subject}.private"
            self._publish(node, room, "security.new_location", payload, principal.tenant)

    def _publish(
        self,
        node: WatchedNode,
        room: str,
        event: str,
        payload: Mapping[str, Any],
        tenant_id: str = "",
    ) -> None:
        # Reported from inside an authentication (synchronous on the gRPC
        # side): the event is published beside it, never delaying the reply.
        coroutine = node.monitor.publish_event(room, event, payload, tenant_id)
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("publishing a security event failed", exc_info=task.exception())
