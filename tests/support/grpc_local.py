"""A gRPC server inside the test's process, and a channel to it.

For the servicers' unit tests: real grpcio on a free loopback port, with
whatever services the test registers, so that requests are decoded and
statuses encoded as for any client (no fake context).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc

__all__ = ["Register", "grpc_channel"]

#: Adds services to a server (``add_realtime_service``, say, with its servicer bound).
Register = Callable[[grpc.aio.Server], None]


@asynccontextmanager
async def grpc_channel(*register: Register) -> AsyncIterator[grpc.aio.Channel]:
    """A started server with the services of ``register``, and a channel to it."""
    server = grpc.aio.server()
    for add in register:
        add(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)
