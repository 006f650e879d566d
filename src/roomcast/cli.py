"""The ``roomcast`` command: serve, token, publish, tail."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from .auth import Role, mint_token
from .config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HOST,
    DEFAULT_HTTP_PORT,
    ClientSettings,
    Settings,
    signing_secret,
)
from .errors import ConfigError
from .server import Endpoints, serve
from .v1 import event_pb2, realtime_pb2, realtime_pb2_grpc
from .workers import WORKER_READY, run_workers

__all__ = ["main"]

DEV_TOKEN_TTL = 24 * 3600.0
# Container allocations between young-generation collections (CPython: 700).
GC_YOUNG_THRESHOLD = 50_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomcast", description="A realtime rooms service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run a node (every option also as ROOMCAST_*)")
    serve_cmd.add_argument(
        "--dev",
        action="store_true",
        default=None,
        help="no configuration needed: random secret, ready-made tokens",
    )
    serve_cmd.add_argument(
        "--host", help="address to listen on (default 0.0.0.0; 127.0.0.1 in --dev)"
    )
    serve_cmd.add_argument(
        "--grpc-port", type=int, help=f"gRPC port (default {DEFAULT_GRPC_PORT}; 0 picks one)"
    )
    serve_cmd.add_argument(
        "--http-port", type=int, help=f"HTTP/WebSocket port (default {DEFAULT_HTTP_PORT})"
    )
    serve_cmd.add_argument("--broker", help="broker URL (default memory://)")
    serve_cmd.add_argument("--jwt-secret", help="HS256 secret (prefer ROOMCAST_JWT_SECRET)")
    serve_cmd.add_argument("--jwt-public-key", type=Path, help="PEM public key for RS256/ES256")
    serve_cmd.add_argument("--jwt-issuer", help="required 'iss' claim")
    serve_cmd.add_argument("--jwt-audience", help="required 'aud' claim")
    serve_cmd.add_argument("--policy", type=Path, help="TOML room policy file")
    serve_cmd.add_argument(
        "--workers", type=int, help="node processes sharing the ports (needs --broker redis://)"
    )
    serve_cmd.add_argument("--config", type=Path, help="TOML settings file")

    token_cmd = commands.add_parser("token", help="mint a token from the configured secret")
    token_cmd.add_argument("--sub", required=True, help="user or service id")
    token_cmd.add_argument("--tenant", help="tenant id (omit for platform-level principals)")
    token_cmd.add_argument(
        "--role",
        action="append",
        required=True,
        choices=[r.value for r in Role],
        help="role (repeatable)",
    )
    token_cmd.add_argument("--ttl", type=float, default=3600.0, help="seconds until expiry")
    token_cmd.add_argument("--jwt-secret", help="HS256 secret (default ROOMCAST_JWT_SECRET)")

    for name, text in (("publish", "publish one event"), ("tail", "print events as JSON lines")):
        cmd = commands.add_parser(name, help=text)
        cmd.add_argument(
            "--target",
            help=f"server address (default localhost:{DEFAULT_GRPC_PORT}, ROOMCAST_TARGET)",
        )
        cmd.add_argument("--token", help="bearer token (prefer ROOMCAST_TOKEN)")
        cmd.add_argument(
            "--tenant", default="", help="tenant of the room, for platform-level callers"
        )
        if name == "publish":
            cmd.add_argument("room")
            cmd.add_argument("event")
            cmd.add_argument("payload", help="a JSON object")
            cmd.add_argument("--idempotency-key", default="")
            cmd.add_argument("--skip-history", action="store_true")
        else:
            cmd.add_argument("rooms", nargs="+", metavar="ROOM_OR_PATTERN")
            cmd.add_argument(
                "--since",
                action="append",
                default=[],
                metavar="ROOM=OFFSET:EPOCH",
                help="resume a room after a position (repeatable)",
            )
    return parser


def _dev_banner(secret: str, endpoints: Endpoints) -> str:
    def token(sub: str, role: Role, tenant: str | None = None) -> str:
        return mint_token(secret, subject=sub, roles=[role], tenant=tenant, ttl=DEV_TOKEN_TTL)

    admin, user, service = (
        token("root", Role.SUPER_ADMIN),
        token("alice", Role.USER, "acme"),
        token("backend", Role.SERVICE),
    )
    target = f"localhost:{endpoints.grpc_port}"
    return f"""\
roomcast --dev: a random JWT secret was made for this run (tokens below are valid 24 h).
  export ROOMCAST_JWT_SECRET={secret}
  export ADMIN_TOKEN={admin}     # super_admin
  export USER_TOKEN={user}       # user alice of tenant acme
  export SERVICE_TOKEN={service} # platform service "backend"
Try:
  grpcurl -plaintext {target} list
  roomcast tail --target {target} --token "$ADMIN_TOKEN" 'global.*'
  grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" \\
    -d '{{"room": "global.lobby", "event": "greeting", "payload": {{"text": "hello"}}}}' \\
    {target} roomcast.v1.RealtimeService/Publish
"""


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    options = {
        key: getattr(args, key)
        for key in (
            "dev",
            "host",
            "grpc_port",
            "http_port",
            "broker",
            "jwt_secret",
            "jwt_public_key",
            "jwt_issuer",
            "jwt_audience",
            "policy",
            "workers",
        )
    }
    settings = Settings.load(options, config_file=args.config)
    if settings.dev:
        changes: dict[str, Any] = {}
        if not settings.jwt_secret and not settings.jwt_public_key:
            changes["jwt_secret"] = secrets.token_urlsafe(32)
        if args.host is None and settings.host == DEFAULT_HOST:
            changes["host"] = "127.0.0.1"
        settings = settings.replace(**changes)

    def announce(endpoints: Endpoints, prefix: str = "roomcast ready:") -> None:
        if settings.dev and settings.jwt_secret and not settings.worker:
            print(_dev_banner(settings.jwt_secret, endpoints), flush=True)
        print(
            f"{prefix} grpc={endpoints.host}:{endpoints.grpc_port} "
            f"http={endpoints.host}:{endpoints.http_port} node={settings.node_id}",
            flush=True,
        )

    if settings.workers > 1 and not settings.worker:
        return run_workers(
            settings,
            argv,
            lambda grpc_port, http_port: announce(Endpoints(settings.host, grpc_port, http_port)),
        )

    def ready(endpoints: Endpoints) -> None:
        _tune_collector()
        announce(endpoints, WORKER_READY if settings.worker else "roomcast ready:")

    _run(serve(settings, on_ready=ready))
    return 0


def _tune_collector() -> None:
    """Set the garbage collector up for a long-running server.

    Publishing allocates a few short-lived objects per event, so with the
    default first-generation threshold (700) the collector would run
    hundreds of times a second at load, each time walking every young
    object; reference counting frees these objects anyway. Freezing moves
    what startup built into a permanent generation that no collection walks.
    Cycles are still collected, only in larger steps.
    """
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, second, third)


def _run(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _token(args: argparse.Namespace) -> int:
    secret = signing_secret(args.jwt_secret)
    print(mint_token(secret, subject=args.sub, roles=args.role, tenant=args.tenant, ttl=args.ttl))
    return 0


def _channel(client: ClientSettings) -> tuple[grpc.aio.Channel, tuple[tuple[str, str], ...]]:
    return grpc.aio.insecure_channel(client.target), (("authorization", f"Bearer {client.token}"),)


async def _publish(args: argparse.Namespace, client: ClientSettings) -> int:
    try:
        payload_json = json.loads(args.payload)
    except json.JSONDecodeError as error:
        raise ConfigError(f"payload is not JSON: {error.msg} at position {error.pos}") from error
    if not isinstance(payload_json, dict):
        raise ConfigError("payload must be a JSON object")
    payload = Struct()
    payload.update(payload_json)
    channel, metadata = _channel(client)
    async with channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        response = await stub.Publish(
            realtime_pb2.PublishRequest(
                room=args.room,
                event=args.event,
                payload=payload,
                tenant_id=args.tenant,
                idempotency_key=args.idempotency_key,
                skip_history=args.skip_history,
            ),
            metadata=metadata,
        )
    print(json_format.MessageToJson(response, indent=None, preserving_proto_field_name=True))
    return 0


def _since(values: Sequence[str]) -> dict[str, event_pb2.StreamPosition]:
    since = {}
    for value in values:
        room, _, position = value.partition("=")
        offset, _, epoch = position.partition(":")
        if not room or not offset.isdigit():
            raise ConfigError(f"--since {value!r}: expected ROOM=OFFSET:EPOCH")
        since[room] = event_pb2.StreamPosition(offset=int(offset), epoch=epoch)
    return since


async def _tail(args: argparse.Namespace, client: ClientSettings) -> int:
    channel, metadata = _channel(client)
    request = realtime_pb2.SubscribeRequest(
        rooms=args.rooms, since=_since(args.since), tenant_id=args.tenant
    )
    async with channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        async for response in stub.Subscribe(request, metadata=metadata):
            for event in response.events:
                print(
                    json_format.MessageToJson(event, indent=None, preserving_proto_field_name=True),
                    flush=True,
                )
            if response.HasField("recovery"):
                marker = json_format.MessageToJson(
                    response.recovery, indent=None, preserving_proto_field_name=True
                )
                print(f"recovery: {marker}", file=sys.stderr, flush=True)
            if response.HasField("subscribed"):
                print(
                    f"subscribed: {', '.join(response.subscribed.rooms)}",
                    file=sys.stderr,
                    flush=True,
                )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``roomcast`` command; returns the exit status."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(arguments)
    try:
        if args.command == "serve":
            return _serve(args, arguments[1:])
        if args.command == "token":
            return _token(args)
        client = ClientSettings.load({"target": args.target, "token": args.token})
        command = _publish if args.command == "publish" else _tail
        return int(_run(command(args, client)))
    except ConfigError as error:
        print(f"roomcast: {error.message}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as error:
        print(f"roomcast: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
