"""roomcast: a realtime platform service — rooms over gRPC and WebSocket.

The public Python API of the server package. Clients live in ``clients/``.
"""

from typing import TYPE_CHECKING

from .auth import Principal, Role, TokenVerifier, mint_token
from .config import ClientSettings, Settings
from .errors import (
    BrokerError,
    BrokerTimeout,
    ConfigError,
    Forbidden,
    InvalidArgument,
    InvalidRoom,
    LimitExceeded,
    NotFound,
    RoomcastError,
    SlowConsumer,
    TokenExpired,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from .node import Node
from .policy import Policy, RoomRule, Scope, Who
from .rooms import Room, RoomPattern, parse_pattern, parse_room_name

if TYPE_CHECKING:
    from .server import serve

__all__ = [
    "BrokerError",
    "BrokerTimeout",
    "ClientSettings",
    "ConfigError",
    "Forbidden",
    "InvalidArgument",
    "InvalidRoom",
    "LimitExceeded",
    "Node",
    "NotFound",
    "Policy",
    "Principal",
    "Role",
    "Room",
    "RoomPattern",
    "RoomRule",
    "RoomcastError",
    "Scope",
    "Settings",
    "SlowConsumer",
    "TokenExpired",
    "TokenVerifier",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "Who",
    "__version__",
    "mint_token",
    "parse_pattern",
    "parse_room_name",
    "serve",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # serve() needs the shells (grpc, websockets); the core loads without them.
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(f"module 'roomcast' has no attribute {name!r}")
