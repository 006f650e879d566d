"""Brokers, picked by the scheme of the ``--broker`` URL.

``memory://`` is the embedded default. Optional brokers import their
dependencies only when their scheme is asked for.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ConfigError
from .broker import (
    Broker,
    Deliver,
    Draft,
    Publication,
    Published,
    Retention,
    RoomStats,
    subscribe_frame,
)

__all__ = [
    "Broker",
    "Deliver",
    "Draft",
    "Publication",
    "Published",
    "Retention",
    "RoomStats",
    "open_broker",
    "subscribe_frame",
]


def open_broker(settings: Settings) -> Broker:
    """The broker named by ``settings.broker``.

    Raises:
        ConfigError: the scheme is unknown.
    """
    scheme = urlsplit(settings.broker).scheme
    if scheme == "memory":
        from .memory import MemoryBroker

        return MemoryBroker(
            idempotency_ttl=settings.idempotency_ttl,
            idempotency_max_keys=settings.idempotency_max_keys,
        )
    raise ConfigError(f"broker {settings.broker!r}: unknown scheme {scheme!r} (known: memory://)")
