"""The one exception tree of roomcast, and its mapping to the wire.

::

    RoomcastError
     ├── ConfigError             refused start: bad option, unreadable file
     ├── Unauthenticated         UNAUTHENTICATED      close 4001
     │    └── TokenExpired       UNAUTHENTICATED      close 4002
     ├── Forbidden               PERMISSION_DENIED    "forbidden"
     │    └── NotMember          PERMISSION_DENIED    "not_member"
     ├── InvalidArgument         INVALID_ARGUMENT     "bad_request"
     │    ├── InvalidRoom        INVALID_ARGUMENT     "invalid_room"
     │    └── UnknownType        INVALID_ARGUMENT     "unknown_type"
     ├── NotFound                NOT_FOUND            "not_found"
     ├── LimitExceeded           RESOURCE_EXHAUSTED   "rate_limited"
     │    ├── TooLarge           RESOURCE_EXHAUSTED   "too_large"
     │    ├── ConnectionLimit    RESOURCE_EXHAUSTED   close 4003
     │    ├── SlowConsumer       RESOURCE_EXHAUSTED   close 4100
     │    ├── Abuse              RESOURCE_EXHAUSTED   close 4101
     │    └── Overloaded         RESOURCE_EXHAUSTED   "overloaded"
     │         └── ServerBusy    RESOURCE_EXHAUSTED   close 1013
     ├── Unavailable             UNAVAILABLE          close 4200
     └── BrokerError             UNAVAILABLE          (the broker failed)
          └── BrokerTimeout      DEADLINE_EXCEEDED

Every message is written for the client: it names the field, the room or the
rule, and never carries a token or the text of an internal exception. The
gRPC shell maps errors with :attr:`RoomcastError.status` (the name of a
``grpc.StatusCode``: the core does not import grpc); the WebSocket shell
with :attr:`RoomcastError.frame_code`.
"""

from __future__ import annotations

__all__ = [
    "Abuse",
    "BrokerError",
    "BrokerTimeout",
    "ConfigError",
    "ConnectionLimit",
    "Forbidden",
    "InvalidArgument",
    "InvalidRoom",
    "LimitExceeded",
    "NotFound",
    "NotMember",
    "Overloaded",
    "RoomcastError",
    "ServerBusy",
    "SlowConsumer",
    "TokenExpired",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "UnknownType",
]


class RoomcastError(Exception):
    """Base of every error roomcast raises on purpose.

    Attributes:
        status: the name of the gRPC status code a call ends with
            (a ``grpc.StatusCode`` member).
        frame_code: the ``code`` of a WebSocket ``error`` frame.
        close_code: the WebSocket close code when the error ends a
            connection, or None when an ``error`` frame is enough.
    """

    status: str = "INTERNAL"
    frame_code: str = "internal"
    close_code: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RoomcastError):
    """The configuration cannot be used; the server refuses to start."""


class Unauthenticated(RoomcastError):
    """No token, or a token that does not verify."""

    status = "UNAUTHENTICATED"
    frame_code = "unauthorized"
    close_code = 4001


class TokenExpired(Unauthenticated):
    """The token was valid once but its ``exp`` has passed."""

    close_code = 4002


class Forbidden(RoomcastError):
    """The room policy refuses the caller; the message names room and rule."""

    status = "PERMISSION_DENIED"
    frame_code = "forbidden"


class NotMember(Forbidden):
    """A WebSocket client acted on a room it has not joined."""

    frame_code = "not_member"


class InvalidArgument(RoomcastError):
    """A request field is malformed; the message names the field."""

    status = "INVALID_ARGUMENT"
    frame_code = "bad_request"


class InvalidRoom(InvalidArgument):
    """A room name or pattern breaks the grammar or is of no known kind."""

    frame_code = "invalid_room"


class UnknownType(InvalidArgument):
    """A WebSocket frame of a type the protocol does not have."""

    frame_code = "unknown_type"


class NotFound(RoomcastError):
    """The thing asked about does not exist (for example a connection id)."""

    status = "NOT_FOUND"
    frame_code = "not_found"


class LimitExceeded(RoomcastError):
    """A configured limit was hit."""

    status = "RESOURCE_EXHAUSTED"
    frame_code = "rate_limited"


class TooLarge(LimitExceeded):
    """A payload, batch or frame is over its size limit."""

    frame_code = "too_large"


class ConnectionLimit(LimitExceeded):
    """Too many live connections for the user, the tenant or the node.

    Clients should back off (as for the 4100 range) before reconnecting.
    """

    close_code = 4003


class SlowConsumer(LimitExceeded):
    """A subscriber fell further behind than its buffer allows."""

    frame_code = "slow_consumer"
    close_code = 4100


class Abuse(LimitExceeded):
    """A connection kept sending refused or malformed frames."""

    close_code = 4101


class Overloaded(LimitExceeded):
    """The node is over its memory budget: expensive reads are refused for now.

    Also: a caller with too many reads in flight. Retry after a backoff.
    """

    frame_code = "overloaded"


class ServerBusy(Overloaded):
    """A new WebSocket connection refused while the node is over its memory budget.

    1013 is RFC 6455's registered "Try Again Later" (IANA WebSocket Close
    Code Number Registry): clients back off before reconnecting.
    """

    close_code = 1013


class Unavailable(RoomcastError):
    """The server cannot take the call now (it is draining, for example)."""

    status = "UNAVAILABLE"
    frame_code = "unavailable"
    close_code = 4200


class BrokerError(RoomcastError):
    """The broker failed to carry out an operation."""

    status = "UNAVAILABLE"
    frame_code = "unavailable"


class BrokerTimeout(BrokerError):
    """The broker did not answer in time."""

    status = "DEADLINE_EXCEEDED"
