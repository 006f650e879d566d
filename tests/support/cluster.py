"""Several real `roomcast serve` processes as one platform, for the multi-node tests.

Builds on :mod:`support.server` (one server) and :mod:`support.redis`
(the `redis-server` processes): nodes start in parallel, share a Redis
under a key prefix of their own, and are stopped with SIGTERM (exit 0
expected). Their clients are in :mod:`support.grpc` and :mod:`support.ws`.

Waits are multiples of :data:`support.waiting.UNIT`.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc
from support.grpc import bearer
from support.server import ServerProcess, start_server
from support.waiting import UNIT

__all__ = [
    "FAST",
    "health",
    "metrics",
    "node_id",
    "prefixed",
    "readyz",
    "start_nodes",
    "stop_nodes",
]

#: Settings that keep the tests short: a sample (and heartbeat) every half
#: second, presence entries of a dead node gone within 3 s.
FAST = {"ROOMCAST_METRICS_INTERVAL": "0.5", "ROOMCAST_PRESENCE_TTL": "3"}
_NODE = re.compile(r"roomcast ready: .* node=(?P<node>\S+)")


def prefixed(url: str) -> str:
    """``url`` with a key prefix no other test uses (one platform per prefix)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}prefix=it{uuid.uuid4().hex[:10]}"


def start_nodes(
    count: int, broker: str, *args: str, env: Mapping[str, str] | None = None
) -> list[ServerProcess]:
    """Start ``count`` nodes on ``broker`` at once; each is ready when this returns."""
    environment = {**FAST, **(env or {})}
    with ThreadPoolExecutor(count) as pool:
        futures = [
            pool.submit(start_server, "--broker", broker, *args, env=environment)
            for _ in range(count)
        ]
    nodes, errors = [], []
    for future in futures:
        try:
            nodes.append(future.result())
        except RuntimeError as error:
            errors.append(error)
    if errors:
        stop_nodes(nodes)
        raise errors[0]
    return nodes


def stop_nodes(nodes: Sequence[ServerProcess]) -> list[int]:
    """SIGTERM every node at once and wait; their exit codes."""
    with ThreadPoolExecutor(max(len(nodes), 1)) as pool:
        return list(pool.map(lambda node: node.stop(), nodes))


def node_id(server: ServerProcess) -> str:
    """The node id a server printed in its ready line."""
    match = _NODE.search(server.log)
    assert match is not None, server.log
    return match["node"]


async def health(server: ServerProcess, service: str = "") -> int:
    """The gRPC health service's status for ``service`` (``SERVING``, ``NOT_SERVING``)."""
    async with server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2 * UNIT)
        status: int = reply.status
        return status


def readyz(server: ServerProcess) -> int:
    """The HTTP status of ``/readyz``."""
    try:
        with urllib.request.urlopen(f"http://{server.http}/readyz", timeout=2 * UNIT) as page:
            status: int = page.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


async def metrics(
    server: ServerProcess, *, cluster: bool = False, channel: grpc.aio.Channel | None = None
) -> realtime_pb2.GetMetricsResponse:
    """GetMetrics as a platform service."""
    request = realtime_pb2.GetMetricsRequest(cluster=cluster)
    token = bearer(server.token("ops", "service", tenant=None))
    if channel is not None:
        return await realtime_pb2_grpc.RealtimeServiceStub(channel).GetMetrics(
            request, metadata=token
        )
    async with server.channel() as own:
        return await realtime_pb2_grpc.RealtimeServiceStub(own).GetMetrics(request, metadata=token)
