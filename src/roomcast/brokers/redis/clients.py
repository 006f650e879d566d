"""redis-py clients for a :class:`~.url.RedisTarget`: commands and pub/sub.

Commands go through redis-py's pooled asyncio client (``Redis`` for one
server, ``RedisCluster`` for a cluster, which routes each command to the
shard of its keys). redis-py uses the ``hiredis`` parser when it is
installed, as the ``roomcast[redis]`` extra makes sure.

No client retries a command by itself: a publish whose reply was lost may
have happened, and running it again would publish the event twice. The
caller sees the failure (:class:`~roomcast.errors.BrokerError`) and retries
with an idempotency key if it must.

Pub/sub connections are plain connections the listener owns
(:class:`SingleTopology`, :class:`ClusterTopology`), so it alone decides
when they reconnect and what they subscribe to.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection
from redis.backoff import NoBackoff
from redis.retry import Retry

from .url import RedisTarget

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "ClusterTopology",
    "CommandClient",
    "SingleTopology",
    "command_client",
    "topology",
]

DEFAULT_MAX_CONNECTIONS = 64
CLIENT_NAME = "roomcast"

CommandClient = Redis | RedisCluster


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _credentials(target: RedisTarget, timeout: float) -> dict[str, Any]:
    return {
        "username": target.username,
        "password": target.password,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": _no_retry(),
        "client_name": CLIENT_NAME,
        # RESP2 everywhere: pub/sub messages are plain replies the listener
        # reads itself (RESP3 turns them into push notifications for
        # redis-py's own handlers), and it works with every Redis.
        "protocol": 2,
    }


def command_client(
    target: RedisTarget, timeout: float, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> CommandClient:
    """The pooled client for commands.

    Args:
        target: where to connect.
        timeout: seconds to connect, and to wait for a reply or a free connection.
        max_connections: connections per server at most (callers wait for one).
    """
    if target.cluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            ssl=target.tls,
            max_connections=max_connections,
            **_credentials(target, timeout),
        )
    host, port = target.nodes[0]
    pool = BlockingConnectionPool(
        connection_class=SSLConnection if target.tls else Connection,
        host=host,
        port=port,
        db=target.db,
        max_connections=max_connections,
        timeout=timeout,
        **_credentials(target, timeout),
    )
    return Redis(connection_pool=pool)


def _pubsub_connection(target: RedisTarget, host: str, port: int, timeout: float) -> Connection:
    kind = SSLConnection if target.tls else Connection
    options = _credentials(target, timeout)
    # The listener bounds its reads itself (pings); a socket timeout would
    # also wrap every write in a task and lose the order of writes.
    options["socket_timeout"] = None
    options["client_name"] = f"{CLIENT_NAME}-listener"
    return kind(host=host, port=port, db=target.db, **options)


class SingleTopology:
    """One Redis server: one pub/sub connection carries every channel."""

    sharded = False

    def __init__(self, target: RedisTarget, timeout: float) -> None:
        self._target = target
        self._timeout = timeout

    async def discover(self) -> list[str]:
        host, port = self._target.nodes[0]
        return [f"{host}:{port}"]

    def connection(self, name: str) -> AbstractConnection:
        host, port = self._target.nodes[0]
        return _pubsub_connection(self._target, host, port, self._timeout)

    def owner(self, channel: bytes) -> str:
        host, port = self._target.nodes[0]
        return f"{host}:{port}"


class ClusterTopology:
    """A Redis Cluster: a pub/sub connection per primary, shard channels by slot.

    The slot map is the command client's, re-read on every :meth:`discover`.
    """

    sharded = True

    def __init__(self, target: RedisTarget, client: RedisCluster, timeout: float) -> None:
        self._target = target
        self._client = client
        self._timeout = timeout

    async def discover(self) -> list[str]:
        await self._client.initialize()
        await self._client.nodes_manager.initialize()
        return [node.name for node in self._client.get_primaries()]

    def connection(self, name: str) -> AbstractConnection:
        node = self._client.get_node(node_name=name)
        if node is None:
            raise ConnectionError(f"{name} is no longer a node of the cluster")
        return _pubsub_connection(self._target, node.host, int(node.port), self._timeout)

    def owner(self, channel: bytes) -> str:
        node = self._client.get_node_from_key(channel)  # type: ignore[arg-type]
        return node.name if node is not None else ""


def topology(
    target: RedisTarget, client: CommandClient, timeout: float
) -> SingleTopology | ClusterTopology:
    """The pub/sub topology for ``target`` (``client`` is its command client)."""
    if isinstance(client, RedisCluster):
        return ClusterTopology(target, client, timeout)
    return SingleTopology(target, timeout)
