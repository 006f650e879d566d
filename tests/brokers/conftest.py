"""Redis servers for the broker tests: one server and one 3-master cluster per session.

Tests sharing them never meet: every test's brokers use a key prefix of
their own (see ``broker_conformance``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The conformance suite lives outside the test modules; its asserts explain
# themselves only if pytest rewrites them too.
pytest.register_assert_rewrite("broker_conformance")

from redis_harness import (  # noqa: E402
    RedisClusterProcesses,
    RedisProcess,
    start_cluster,
    start_redis,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """A `redis-server` of this session (never the machine's shared one)."""
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """A Redis Cluster of 3 masters started by this session."""
    cluster = start_cluster(3)
    yield cluster
    cluster.stop()
