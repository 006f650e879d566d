"""Security monitoring: failed logins, new locations, client addresses, GeoIP.

The pure trackers live in :mod:`.addresses`, :mod:`.logins`,
:mod:`.locations` and :mod:`.geoip`; :mod:`.watch` is the shell both ports
report to (import it from there: it needs the node, and the pure parts are
also used by ``config.py``).
"""

from __future__ import annotations

from .addresses import (
    IPAddress,
    IPNetwork,
    TrustedProxies,
    network_of,
    normalize,
    parse_address,
    parse_networks,
    peer_address,
)
from .geoip import GeoIP, Place
from .locations import NewLocation, NewLocations
from .logins import FailedLoginAlert, FailedLogins, SlidingCount, claimed_subject

__all__ = [
    "FailedLoginAlert",
    "FailedLogins",
    "GeoIP",
    "IPAddress",
    "IPNetwork",
    "NewLocation",
    "NewLocations",
    "Place",
    "SlidingCount",
    "TrustedProxies",
    "claimed_subject",
    "network_of",
    "normalize",
    "parse_address",
    "parse_networks",
    "peer_address",
]
