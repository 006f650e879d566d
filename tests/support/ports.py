"""Free TCP ports on 127.0.0.1."""

from __future__ import annotations

import socket

__all__ = ["free_port"]

# Redis Cluster's bus listens on port + 10000, so cluster ports stay below this.
_MAX_CLUSTER_PORT = 65535 - 10000


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster: bool = False) -> int:
    """A TCP port nothing listens on now (and its bus port + 10000, for Redis cluster nodes).

    Another process may take it before it is used; callers that start a
    server on it retry on a new port or accept the rare failure.
    """
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if not cluster:
            return port
        if port <= _MAX_CLUSTER_PORT and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")
