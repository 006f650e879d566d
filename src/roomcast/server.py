"""The server's lifecycle in one coroutine: build, start, wait, drain, stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from .auth import TokenVerifier
from .bridge import Bridge
from .brokers import open_broker
from .config import Settings
from .errors import ConfigError
from .node import Node
from .policy import Policy
from .rpc import AdminServicer, RealtimeServicer, add_admin_service, add_realtime_service
from .rpc.reflection import enable_reflection
from .v1 import admin_pb2, realtime_pb2

__all__ = ["Endpoints", "build_verifier", "serve"]

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    realtime_pb2.DESCRIPTOR.services_by_name["RealtimeService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
HEALTH_CHECK_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a started server listens."""

    host: str
    grpc_port: int
    http_port: int


def build_verifier(settings: Settings) -> TokenVerifier:
    """The token verifier the settings describe.

    Raises:
        ConfigError: no key, or an unreadable key file.
    """
    options = {"issuer": settings.jwt_issuer, "audience": settings.jwt_audience}
    if settings.jwt_public_key is not None:
        return TokenVerifier.from_public_key_file(settings.jwt_public_key, **options)
    if not settings.jwt_secret:
        raise ConfigError("no JWT key configured")
    return TokenVerifier(secret=settings.jwt_secret, **options)  # type: ignore[arg-type]


async def _track_health(node: Node, health: HealthServicer, serving: bool) -> None:
    """Serve the standard health service: SERVING while the broker answers.

    A node whose broker is unreachable still serves its local rooms, but a
    load balancer should prefer the others: it reports NOT_SERVING (and
    ``/readyz`` 503) until the broker is back.
    """
    while not node.draining:
        await asyncio.sleep(HEALTH_CHECK_INTERVAL)
        try:
            # Not asyncio.wait_for, which can swallow the cancellation of a
            # closing node on Python 3.11 (see Monitor.tick).
            async with asyncio.timeout(HEALTH_CHECK_INTERVAL):
                healthy = await node.broker.healthy()
        except TimeoutError:
            healthy = False
        if healthy != serving and not node.draining:
            serving = healthy
            await _set_health(health, healthy)
            log.warning("the broker is %s", "reachable again" if healthy else "unreachable")


async def _set_health(health: HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *SERVICE_NAMES):
        await health.set(name, status)


def _check_bindable(host: str, port: int) -> None:
    """Fail with the operating system's reason before grpc logs its own noise."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from error


async def serve(
    settings: Settings,
    *,
    on_ready: Callable[[Endpoints], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a node until SIGTERM/SIGINT (or ``stop``), then drain and exit.

    Draining: health turns NOT_SERVING, new calls are refused, Subscribe
    streams end with UNAVAILABLE and WebSocket connections are closed with
    4200 (clients resume with ``since``), and in-flight unary calls get
    ``shutdown_grace`` seconds to finish.

    Raises:
        ConfigError: the configuration cannot be used or a port cannot be bound.
    """
    policy = Policy.from_toml(settings.policy) if settings.policy else Policy()
    verifier = build_verifier(settings)
    node = Node(settings, policy, verifier, open_broker(settings))
    stop = stop or asyncio.Event()
    server = grpc.aio.server(
        options=[
            # A port that is taken must fail the start, not be silently shared
            # (workers share theirs on purpose).
            ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    realtime = RealtimeServicer(node)
    add_realtime_service(realtime, server)
    add_admin_service(AdminServicer(node), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    enable_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
    )
    address = f"{settings.host}:{settings.grpc_port}"
    if not settings.reuse_port:
        _check_bindable(settings.host, settings.grpc_port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise ConfigError(f"cannot listen for gRPC on {address}") from error
    await node.start()
    bridge = Bridge(node)
    try:
        http_port = await bridge.start()
        await server.start()
        serving = await node.broker.healthy()
        await _set_health(health, serving)
        node.supervisor.spawn("health", lambda: _track_health(node, health, serving))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if on_ready is not None:
            on_ready(Endpoints(settings.host, port, http_port))
        await stop.wait()
        log.info("draining: ending streams, %.1fs grace for calls", settings.shutdown_grace)
        node.begin_drain()
        await health.enter_graceful_shutdown()
        realtime.stop_streams()
        await bridge.close()
        await server.stop(settings.shutdown_grace)
    finally:
        await server.stop(0)
        await bridge.close()
        await node.close()
    log.info("stopped")
