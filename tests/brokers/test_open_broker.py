"""Brokers picked by URL scheme (src/roomcast/brokers/__init__.py)."""

from __future__ import annotations

import pytest

from roomcast.brokers import open_broker
from roomcast.brokers.memory import MemoryBroker
from roomcast.brokers.redis import RedisBroker
from roomcast.config import Settings
from roomcast.errors import ConfigError


def settings(broker: str) -> Settings:
    return Settings(broker=broker, dev=True, publish_timeout=1.5, idempotency_ttl=30.0)


def test_memory_is_the_default() -> None:
    assert isinstance(open_broker(settings("memory://")), MemoryBroker)


@pytest.mark.parametrize(
    "url",
    ["redis://h:6379/0", "rediss://h", "redis+cluster://a:1,b:2", "rediss+cluster://a:1"],
)
def test_redis_schemes_pick_the_redis_broker(url: str) -> None:
    broker = open_broker(settings(url))
    assert isinstance(broker, RedisBroker)
    assert broker.timeout == 1.5
    assert broker.target.cluster == ("+cluster" in url)


def test_an_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown scheme 'nats' \(known: memory://, redis://"):
        open_broker(settings("nats://h"))


def test_a_malformed_redis_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a port"):
        open_broker(settings("redis://h:x"))
