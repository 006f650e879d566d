"""roomcast_client: a typed asyncio client for roomcast's gRPC API.

``RoomcastClient`` publishes to rooms, follows rooms and patterns with
subscriptions that resume by themselves after a break, and offers the
platform's helper verbs (``send_user_notification``, ...) and the operators'
calls (``alerts``, ``disconnect_user``, ...). Failures raise
the exceptions of ``roomcast_client.errors``; the generated messages and
stubs (betterproto, grpclib) are in ``roomcast_client.v1``.
"""

from roomcast_client.client import DEFAULT_TIMEOUT, RoomcastClient
from roomcast_client.errors import (
    ClientClosed,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RoomcastError,
    ServerError,
    Unauthenticated,
    Unavailable,
)
from roomcast_client.handlers import EventHandler, EventSubscription, GapHandler
from roomcast_client.subscription import DEFAULT_RECONNECT, Reconnect, Subscription
from roomcast_client.tokens import TokenSource
from roomcast_client.values import (
    Alert,
    Alerts,
    Event,
    Gap,
    JSONValue,
    Position,
    Published,
    PublishItem,
    Sender,
    Tracked,
)

__all__ = [
    "DEFAULT_RECONNECT",
    "DEFAULT_TIMEOUT",
    "Alert",
    "Alerts",
    "ClientClosed",
    "DeadlineExceeded",
    "Event",
    "EventHandler",
    "EventSubscription",
    "Gap",
    "GapHandler",
    "InvalidArgument",
    "JSONValue",
    "NotFound",
    "PermissionDenied",
    "Position",
    "PublishItem",
    "Published",
    "Reconnect",
    "ResourceExhausted",
    "RoomcastClient",
    "RoomcastError",
    "Sender",
    "ServerError",
    "Subscription",
    "TokenSource",
    "Tracked",
    "Unauthenticated",
    "Unavailable",
]
