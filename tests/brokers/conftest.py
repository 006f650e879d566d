"""Redis servers for the broker tests: one server and one 3-master cluster per session.

Tests sharing them never meet: every test's brokers use a key prefix of
their own (see ``support.redis_brokers``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.redis import RedisClusterProcesses, RedisProcess, start_cluster, start_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """A `redis-server` of this session (never the machine's shared one)."""
    with start_redis() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """A Redis Cluster of 3 masters started by this session."""
    with start_cluster(3) as cluster:
        yield cluster
