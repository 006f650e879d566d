"""Brokers, picked by the scheme of the ``--broker`` URL.

``memory://`` is the embedded default. ``redis://``, ``rediss://`` and
``redis[s]+cluster://`` pick the Redis broker (``pip install
'roomcast[redis]'``). Optional brokers import their dependencies only when
their scheme is asked for.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ConfigError
from ..wire import subscribe_frame
from .broker import Broker
from .redis.url import SCHEMES as REDIS_SCHEMES  # pure: imports no redis-py
from .values import (
    Deliver,
    Draft,
    Outcome,
    Publication,
    Published,
    PublishedRun,
    Retention,
    RoomStats,
    expand,
)

__all__ = [
    "REDIS_SCHEMES",
    "Broker",
    "Deliver",
    "Draft",
    "Outcome",
    "Publication",
    "Published",
    "PublishedRun",
    "Retention",
    "RoomStats",
    "expand",
    "open_broker",
    "subscribe_frame",
]


def open_broker(settings: Settings) -> Broker:
    """The broker named by ``settings.broker``.

    Raises:
        ConfigError: the scheme is unknown, the URL is malformed, or the
            broker's optional dependency is not installed.
    """
    scheme = urlsplit(settings.broker).scheme
    if scheme == "memory":
        from .memory import MemoryBroker

        return MemoryBroker(
            idempotency_ttl=settings.idempotency_ttl,
            idempotency_max_keys=settings.idempotency_max_keys,
        )
    if scheme in REDIS_SCHEMES:
        try:
            from .redis import RedisBroker
        except ImportError as error:
            raise ConfigError(
                f"the {scheme}:// broker needs the redis extra: pip install 'roomcast[redis]'"
            ) from error
        return RedisBroker(
            settings.broker,
            publish_timeout=settings.publish_timeout,
            idempotency_ttl=settings.idempotency_ttl,
            node_id=settings.node_id,
            presence_ttl=settings.presence_ttl,
            node_ttl=max(3 * settings.metrics_interval, 5.0),
        )
    known = ", ".join(f"{name}://" for name in ("memory", *REDIS_SCHEMES))
    raise ConfigError(f"broker {settings.broker!r}: unknown scheme {scheme!r} (known: {known})")
