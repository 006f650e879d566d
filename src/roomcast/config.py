"""One :class:`Settings` value, built once from every source, passed down.

Precedence, highest first: command-line options, ``ROOMCAST_*`` environment
variables, the TOML file named by ``--config`` / ``ROOMCAST_CONFIG``, the
defaults below. This is the only module that reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .security.addresses import parse_networks

__all__ = [
    "DEFAULT_GRPC_PORT",
    "DEFAULT_HOST",
    "DEFAULT_HTTP_PORT",
    "ENV_PREFIX",
    "ClientSettings",
    "Settings",
    "signing_secret",
    "worker_environment",
]

ENV_PREFIX = "ROOMCAST_"
DEFAULT_GRPC_PORT = 50051
DEFAULT_HTTP_PORT = 8080
DEFAULT_HOST = "0.0.0.0"
DEFAULT_TARGET = f"localhost:{DEFAULT_GRPC_PORT}"


def _node_id() -> str:
    return f"node-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node is configured with.

    Every field can be set as ``ROOMCAST_<FIELD>`` (upper case) in the
    environment or as ``<field>`` in the TOML config file.
    """

    host: str = DEFAULT_HOST
    grpc_port: int = DEFAULT_GRPC_PORT
    http_port: int = DEFAULT_HTTP_PORT
    broker: str = "memory://"
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    policy: Path | None = None
    dev: bool = False
    node_id: str = field(default_factory=_node_id)
    # Limits.
    max_payload_bytes: int = 64 * 1024
    max_batch_size: int = 10_000
    max_subscribe_rooms: int = 128
    max_subscribe_since: int = 128  # rooms a Subscribe may resume (its since map)
    # The most a GetHistory or GetPresence response carries (encoded); the
    # rest comes in further pages.
    max_reply_bytes: int = 1024 * 1024
    # History, replay and presence reads one user (or service) may have in
    # flight at once, over every connection and call.
    max_reads_in_flight: int = 16
    # The node's memory ceiling (resident bytes): above it, new connections
    # are refused (1013) and expensive reads answered "overloaded", until it
    # is back under 90 % of it. 0: 80 % of the memory the process may use
    # (its cgroup's limit, else the machine's). Checked every interval.
    memory_limit_bytes: int = 0
    memory_check_interval: float = 0.25
    # A Subscribe stream whose unsent events exceed this is ended with
    # RESOURCE_EXHAUSTED: a reader that cannot keep up never grows memory.
    subscriber_buffer_bytes: int = 8 * 1024 * 1024
    max_frame_bytes: int = 512 * 1024  # coalesced events per stream message
    # Under load a stream writes at most once per window (see rpc/realtime.py).
    stream_coalesce_seconds: float = 0.002
    idempotency_ttl: float = 300.0
    idempotency_max_keys: int = 100_000
    publish_timeout: float = 5.0
    shutdown_grace: float = 10.0
    metrics_interval: float = 5.0
    # Off: no sampling, no snapshots or alerts, nothing observed on the hot
    # path (only to measure what metrics cost; docs/benchmarks.md).
    metrics: bool = True
    # WebSocket bridge (docs/protocol.md).
    ws_auth_timeout: float = 10.0  # seconds to send the auth frame
    ws_heartbeat: float = 25.0  # WebSocket ping interval, also sent to clients
    # Larger inbound frames close with 1009. Above the payload limit plus a
    # frame's envelope, so an oversized payload gets a too_large error frame.
    ws_max_frame_bytes: int = 128 * 1024
    ws_max_rooms: int = 128  # rooms one connection may be in
    ws_rate_limit: float = 20.0  # inbound frames per second, per connection
    ws_rate_burst: int = 50
    # Refused or malformed frames a connection may send before it is closed
    # with 4101; one is forgiven per second.
    ws_abuse_limit: int = 50
    # Unsent bytes a connection may have before it is closed with 4100.
    ws_send_buffer_bytes: int = 1024 * 1024
    # The most one reply (history, room_joined with missed events, presence)
    # may take of it; longer answers come in pages (docs/protocol.md#limits).
    ws_max_reply_bytes: int = 256 * 1024
    # A reply waits this long for a connection's unsent bytes to leave room
    # for it, then the connection is closed as a slow consumer (4100).
    ws_drain_timeout: float = 30.0
    max_connections_per_user: int = 10
    max_connections_per_tenant: int = 0  # 0: no limit
    token_expiry_notice: float = 60.0  # token.expiring this long before exp
    cursor_interval: float = 0.05  # at most one cursor update per user and room
    # With a shared broker: seconds a presence entry counts without a refresh
    # (the entries of a node that died disappear within this).
    presence_ttl: float = 60.0
    # Node processes on this machine sharing the ports (needs a shared broker).
    workers: int = 1
    reuse_port: bool = False  # set for workers: several processes bind one port
    worker: bool = False  # set for workers: this process is one of several
    # /metrics asks for "Authorization: Bearer <metrics_token>" when set.
    metrics_token: str | None = field(default=None, repr=False)
    # Alert thresholds (docs/operations.md); 0 turns a rule off.
    alert_cpu_percent: float = 85.0
    alert_cpu_samples: int = 3
    alert_memory_percent: float = 90.0
    alert_latency_p99_ms: float = 100.0
    alert_error_rate: float = 0.05
    alert_max_connections: int = 0
    alert_tenant_connections: int = 0
    # Security monitoring (docs/operations.md#security-monitoring).
    # More than failed_login_limit failed authentications from one address
    # within failed_login_window seconds alert once per window; 0 never alerts.
    failed_login_limit: int = 5
    failed_login_window: float = 60.0
    # A WebSocket user on a network not seen for them this long alerts; 0: off.
    new_location_days: float = 30.0
    # Addresses, subjects and users each tracked at most (oldest forgotten).
    security_max_tracked: int = 10_000
    # Comma-separated IPs/CIDRs whose X-Forwarded-For is believed; empty: nobody.
    trusted_proxies: str = ""
    # A MaxMind-format database: country/city on new-location events (roomcast[geoip]).
    geoip_database: Path | None = None

    @classmethod
    def load(
        cls,
        options: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        config_file: Path | None = None,
    ) -> Settings:
        """Build settings from options, environment and config file.

        Args:
            options: values given on the command line (None values ignored).
            environ: the environment; ``os.environ`` when omitted.
            config_file: a TOML file; ``ROOMCAST_CONFIG`` names one when omitted.

        Raises:
            ConfigError: a value does not parse, a key is unknown, or the
                config file cannot be read.
        """
        environ = os.environ if environ is None else environ
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        path = config_file or (
            Path(environ[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in environ else None
        )
        if path is not None:
            for key, raw in _read_toml(path).items():
                if key not in known:
                    raise ConfigError(f"config file {path}: unknown setting {key!r}")
                values[key] = _coerce(known[key], raw, f"config file {path}: {key}")
        for name, spec in known.items():
            raw_env = environ.get(f"{ENV_PREFIX}{name.upper()}")
            if raw_env is not None and raw_env != "":
                values[name] = _coerce(spec, raw_env, f"{ENV_PREFIX}{name.upper()}")
        for name, raw_option in (options or {}).items():
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}")
            if raw_option is not None:
                values[name] = _coerce(known[name], raw_option, f"--{name.replace('_', '-')}")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check values that parse but make no sense together.

        Raises:
            ConfigError: naming the setting.
        """
        for port_name in ("grpc_port", "http_port"):
            port = getattr(self, port_name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{port_name}: {port} is not a TCP port")
        if self.jwt_secret and self.jwt_public_key:
            raise ConfigError("give either a JWT secret or a JWT public key, not both")
        if not self.dev and not self.jwt_secret and not self.jwt_public_key:
            raise ConfigError(
                "no JWT key: set --jwt-secret or --jwt-public-key (or ROOMCAST_JWT_SECRET), "
                "or run with --dev"
            )
        positive = (
            "max_payload_bytes",
            "max_batch_size",
            "subscriber_buffer_bytes",
            "ws_auth_timeout",
            "ws_max_frame_bytes",
            "ws_max_rooms",
            "ws_rate_limit",
            "ws_rate_burst",
            "ws_abuse_limit",
            "ws_send_buffer_bytes",
            "ws_max_reply_bytes",
            "ws_drain_timeout",
            "max_subscribe_since",
            "max_reply_bytes",
            "max_reads_in_flight",
            "memory_check_interval",
            "max_connections_per_user",
            "failed_login_window",
            "security_max_tracked",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be greater than 0")
        for name in ("failed_login_limit", "new_location_days", "memory_limit_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be 0 (off) or more")
        parse_networks(self.trusted_proxies)  # names the entry that does not parse

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error


def _coerce(spec: dataclasses.Field[Any], raw: Any, where: str) -> Any:
    kind = str(spec.type)
    try:
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind.startswith("int"):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if kind.startswith("float"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if kind.startswith("Path"):
            return Path(raw)
        return str(raw)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {raw!r} is not a valid {kind.split(' ')[0]}") from error


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What ``roomcast publish`` and ``roomcast tail`` connect with."""

    target: str = DEFAULT_TARGET
    token: str | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls, options: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
    ) -> ClientSettings:
        """From ``--target``/``--token``, else ``ROOMCAST_TARGET``/``ROOMCAST_TOKEN``.

        Raises:
            ConfigError: no token anywhere.
        """
        environ = os.environ if environ is None else environ
        target = options.get("target") or environ.get(f"{ENV_PREFIX}TARGET") or DEFAULT_TARGET
        token = options.get("token") or environ.get(f"{ENV_PREFIX}TOKEN")
        if not token:
            raise ConfigError("no token: pass --token or set ROOMCAST_TOKEN")
        return cls(target, token)


def signing_secret(option: str | None, *, environ: Mapping[str, str] | None = None) -> str:
    """The HS256 secret for minting tokens: the option, else ROOMCAST_JWT_SECRET.

    Raises:
        ConfigError: neither is set.
    """
    environ = os.environ if environ is None else environ
    secret = option or environ.get(f"{ENV_PREFIX}JWT_SECRET")
    if not secret:
        raise ConfigError("no secret: pass --jwt-secret or set ROOMCAST_JWT_SECRET")
    if len(secret.encode()) < 32:
        raise ConfigError("the JWT secret must be at least 32 bytes long")
    return secret


def worker_environment(
    settings: Settings,
    index: int,
    grpc_port: int,
    http_port: int,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of worker ``index`` of ``roomcast serve --workers N``.

    The parent's environment, so that a worker loads the same settings,
    with what makes it one worker among N: its node id, the shared ports
    (SO_REUSEPORT), and the parent's ``--dev`` secret when there is one.
    """
    environ = os.environ if environ is None else environ
    environment = dict(environ) | {
        f"{ENV_PREFIX}WORKERS": "1",
        f"{ENV_PREFIX}REUSE_PORT": "true",
        f"{ENV_PREFIX}NODE_ID": f"{settings.node_id}-w{index}",
        f"{ENV_PREFIX}GRPC_PORT": str(grpc_port),
        f"{ENV_PREFIX}HTTP_PORT": str(http_port),
        f"{ENV_PREFIX}WORKER": "1",
    }
    if settings.jwt_secret:  # a --dev secret made by the parent
        environment[f"{ENV_PREFIX}JWT_SECRET"] = settings.jwt_secret
    return environment
