"""New locations: a user connecting from a network not seen for them lately.

A network is an IPv4 /24 or an IPv6 /48 (:func:`~.addresses.network_of`).
Pure: the caller passes the time in.

The first connection of a user this tracker has never seen (since the node
started, or since the user was evicted) is recorded silently: with nothing
to compare against, every first login would otherwise alert — after every
restart, for every user. Memory is bounded twice: at most ``max_users``
users (the least recently connected is forgotten first) and at most
``max_networks`` networks per user (the least recently seen first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .addresses import IPAddress, IPNetwork, network_of, normalize

__all__ = ["DAY", "MAX_NETWORKS_PER_USER", "NewLocation", "NewLocations", "UserKey"]

DAY = 86_400.0
MAX_NETWORKS_PER_USER = 32

#: A user: (tenant id, or "" for platform-level principals; subject).
UserKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class NewLocation:
    """A user seen on a network not seen for them within the horizon.

    Attributes:
        user: the user.
        ip_address: the address they connected from.
        network: its network.
        known_networks: other networks seen for them within the horizon.
        seen_at: when (seconds since the epoch).
    """

    user: UserKey
    ip_address: IPAddress
    network: IPNetwork
    known_networks: int
    seen_at: float

    def payload(self) -> dict[str, Any]:
        """The ``security.new_location`` payload (without GeoIP fields)."""
        tenant, subject = self.user
        return {
            "type": "new_location",
            "user_id": subject,
            "tenant_id": tenant,
            "ip_address": str(self.ip_address),
            "network": str(self.network),
            "known_networks": self.known_networks,
            "seen_at": round(self.seen_at, 3),
        }


class NewLocations:
    """Remembers the networks each user connects from.

    Args:
        horizon: seconds a network stays known after it was last seen;
            0 or less turns the tracker off.
        max_users: users kept at most.
        max_networks: networks kept per user at most.
    """

    def __init__(
        self, *, horizon: float, max_users: int, max_networks: int = MAX_NETWORKS_PER_USER
    ) -> None:
        self.horizon = horizon
        self.max_users = max_users
        self.max_networks = max_networks
        # user -> network -> last seen, least recently seen first.
        # Per user a plain dict, oldest sighting first (insertion order):
        # an OrderedDict costs twice the memory, for every user connected.
        self._users: OrderedDict[UserKey, dict[IPNetwork, float]] = OrderedDict()

    def observe(self, user: UserKey, address: IPAddress, now: float) -> NewLocation | None:
        """Record a connection; the new location it reveals, if any.

        Args:
            user: who connected.
            address: from where.
            now: seconds since the epoch.
        """
        if self.horizon <= 0:
            return None
        address = normalize(address)
        network = network_of(address)
        networks = self._users.get(user)
        if networks is None:
            self._users[user] = {network: now}
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
            return None  # first sighting: nothing to compare against
        self._users.move_to_end(user)
        while networks:
            oldest, seen = next(iter(networks.items()))
            if now - seen <= self.horizon:
                break
            del networks[oldest]
        known = networks.pop(network, None) is not None
        networks[network] = now  # last, as the most recent
        if len(networks) > self.max_networks:
            del networks[next(iter(networks))]
        if known:
            return None
        return NewLocation(user, address, network, len(networks) - 1, now)

    def networks(self, user: UserKey) -> list[IPNetwork]:
        """The networks held for ``user``, least recently seen first."""
        return list(self._users.get(user, ()))

    def __len__(self) -> int:
        return len(self._users)
