"""Broker URLs (src/roomcast/brokers/redis/url.py)."""

from __future__ import annotations

import re

import pytest

from roomcast.brokers.redis.url import RedisTarget, parse_redis_url
from roomcast.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://localhost", RedisTarget(False, (("localhost", 6379),))),
        ("redis://10.0.0.5:6380/2", RedisTarget(False, (("10.0.0.5", 6380),), db=2)),
        (
            "rediss://app:s%40cret@cache.internal:6390/0?prefix=prod",
            RedisTarget(
                False,
                (("cache.internal", 6390),),
                username="app",
                password="s@cret",
                tls=True,
                prefix="prod",
            ),
        ),
        ("redis://:pw@h", RedisTarget(False, (("h", 6379),), password="pw")),
        ("redis://[::1]:7000", RedisTarget(False, (("::1", 7000),))),
        (
            "redis+cluster://a:7000,b:7001,c",
            RedisTarget(True, (("a", 7000), ("b", 7001), ("c", 6379))),
        ),
        (
            "rediss+cluster://u:p@a:7000/?prefix=rc:eu",
            RedisTarget(True, (("a", 7000),), username="u", password="p", tls=True, prefix="rc:eu"),
        ),
    ],
)
def test_urls_parse(url: str, target: RedisTarget) -> None:
    assert parse_redis_url(url) == target


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://", "not a Redis URL"),
        ("redis://", "a host is missing"),
        ("redis://h:port", "'port' is not a port"),
        ("redis://h:70000", "70000 is not a TCP port"),
        ("redis://a:1,b:2", "several hosts need redis+cluster://"),
        ("redis://h/zero", "'zero' is not a database number"),
        ("redis+cluster://a:1/3", "a Redis Cluster has only database 0"),
        ("redis://h?timeout=3", "unknown option 'timeout'"),
        ("redis://h?prefix=a{b}", "prefix 'a{b}' must be"),
        ("redis://h?prefix=", "prefix '' must be"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_redis_url(url)


def test_the_password_is_never_repeated() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_redis_url("redis://user:hunter2@h:bad")
    assert "hunter2" not in refused.value.message
    assert "***" in refused.value.message
    assert "hunter2" not in repr(parse_redis_url("redis://user:hunter2@h"))
