"""The client's exceptions, and their mapping from the transport's errors.

Every failed call raises one of these, never a grpclib or socket error::

    RoomcastError                 any failure; .code is the gRPC status name
    ├── Unauthenticated           UNAUTHENTICATED: missing, invalid or expired token
    ├── PermissionDenied          PERMISSION_DENIED: the room policy or tenant isolation refuses
    ├── InvalidArgument           INVALID_ARGUMENT: a malformed room, event, tenant or field
    ├── NotFound                  NOT_FOUND: JoinRoom/LeaveRoom with an unknown connection
    ├── ResourceExhausted         RESOURCE_EXHAUSTED: a limit was hit (payload, batch, slow reader)
    ├── Unavailable               UNAVAILABLE: no connection, or the server is shutting down
    ├── DeadlineExceeded          DEADLINE_EXCEEDED: the call's timeout passed
    ├── ClientClosed              the client was used after it was closed
    └── ServerError               INTERNAL and any other status: a server bug or an unknown code

The server writes its messages for clients (they name the field, the room or
the rule), so ``str(error)`` is worth showing to a developer as it is.
"""

from __future__ import annotations

from typing import ClassVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

__all__ = [
    "ClientClosed",
    "DeadlineExceeded",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RoomcastError",
    "ServerError",
    "Unauthenticated",
    "Unavailable",
    "from_code",
    "from_transport",
]


class RoomcastError(Exception):
    """A call to roomcast failed.

    Attributes:
        code: The gRPC status name, for example ``"PERMISSION_DENIED"``.
        message: What went wrong, as the server (or the client) put it.
    """

    default_code: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class Unauthenticated(RoomcastError):
    """The token is missing, does not verify, lacks a claim, or has expired."""

    default_code = "UNAUTHENTICATED"


class PermissionDenied(RoomcastError):
    """The room policy or tenant isolation refuses the call."""

    default_code = "PERMISSION_DENIED"


class InvalidArgument(RoomcastError):
    """A field of the request is malformed; the message names it."""

    default_code = "INVALID_ARGUMENT"


class NotFound(RoomcastError):
    """JoinRoom or LeaveRoom named a connection that is not live."""

    default_code = "NOT_FOUND"


class ResourceExhausted(RoomcastError):
    """A limit was hit: payload size, batch size, rooms per stream, or a slow reader."""

    default_code = "RESOURCE_EXHAUSTED"


class Unavailable(RoomcastError):
    """The server cannot be reached, the connection broke, or the server is shutting down."""

    default_code = "UNAVAILABLE"


class DeadlineExceeded(RoomcastError):
    """The call did not finish within its timeout."""

    default_code = "DEADLINE_EXCEEDED"


class ClientClosed(RoomcastError):
    """The client was used after it was closed."""

    default_code = "CANCELLED"


class ServerError(RoomcastError):
    """INTERNAL or any other status: the message carries the server's log reference."""

    default_code = "INTERNAL"


_BY_CODE: dict[str, type[RoomcastError]] = {
    cls.default_code: cls
    for cls in (
        Unauthenticated,
        PermissionDenied,
        InvalidArgument,
        NotFound,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
    )
}


def from_code(code: str, message: str) -> RoomcastError:
    """The exception for a status name, as PublishBatch reports a refused item.

    Args:
        code: A gRPC status name such as ``"INVALID_ARGUMENT"``.
        message: The server's message.

    Returns:
        An instance of the matching class (``ServerError`` for unknown names).
    """
    return _BY_CODE.get(code, ServerError)(message, code=code)


def from_transport(error: BaseException) -> RoomcastError:
    """Translate what grpclib, asyncio or the socket raised into the tree above.

    Args:
        error: The exception a stub call raised.

    Returns:
        The matching ``RoomcastError``; raise it ``from error``.
    """
    if isinstance(error, RoomcastError):
        return error
    if isinstance(error, GRPCError):
        return from_code(error.status.name, error.message or error.status.name)
    if isinstance(error, TimeoutError):
        return DeadlineExceeded("the call did not finish within its timeout")
    if isinstance(error, StreamTerminatedError):
        return Unavailable(f"the server reset the stream: {error}")
    if isinstance(error, ConnectionError | OSError):
        return Unavailable(f"cannot reach the server: {error}")
    if isinstance(error, ProtocolError):
        return ServerError(f"gRPC protocol error: {error}", code=Status.INTERNAL.name)
    return ServerError(f"unexpected transport error: {error!r}", code=Status.UNKNOWN.name)
