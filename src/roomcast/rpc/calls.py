"""What every servicer method shares: who is calling, and errors on the wire.

Exceptions become statuses here and only here: a :class:`RoomcastError`
ends the call with its status and its client-safe message; anything else is
logged with a reference and ends the call with INTERNAL and that reference,
never with exception text.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from ..auth import Principal
from ..errors import InvalidArgument, RoomcastError, Unauthenticated
from ..node import Node
from ..security.addresses import peer_address

__all__ = ["Undecodable", "authenticate", "decoding", "grpc_status", "handle_errors"]

log = logging.getLogger(__name__)

Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])
_BEARER = "bearer "
_FORWARDED = "x-forwarded-for"  # gRPC metadata keys are lower case


def grpc_status(error: RoomcastError) -> tuple[grpc.StatusCode, str]:
    """The status code and client-safe details a call ends with for ``error``."""
    return grpc.StatusCode[error.status], error.message


def authenticate(node: Node, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
    """The caller's principal, from ``authorization: Bearer <token>`` metadata.

    A failure is reported to the node's security watch with the client's
    address (``x-forwarded-for`` is believed only from a trusted proxy).

    Raises:
        Unauthenticated: the metadata is missing or the token does not verify.
    """
    metadata = context.invocation_metadata() or ()
    token: str | None = None
    try:
        for key, value in metadata:
            if key == "authorization":
                text = _text(value)
                if not text.lower().startswith(_BEARER) or not text[len(_BEARER) :].strip():
                    raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
                token = text[len(_BEARER) :].strip()
                return node.authenticate(token)
        raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
    except Unauthenticated:
        watch = node.security
        forwarded = [_text(value) for key, value in metadata if key == _FORWARDED]
        address = watch.client_address(peer_address(context.peer()), forwarded)
        watch.failed(node, address, token)
        raise


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request that could not be decoded; :func:`handle_errors` refuses it."""

    message: str


def decoding(parse: Callable[[bytes], Any], name: str) -> Callable[[bytes], Any]:
    """``parse`` as a request deserializer that answers bad bytes with :class:`Undecodable`.

    A deserializer that raises makes grpcio end the call with UNKNOWN and the
    exception's text; undecodable input is the caller's error, so the call
    should end with INVALID_ARGUMENT, which handle_errors does.
    """

    def decode(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as error:
            return Undecodable(f"request: not a valid {name} ({error})")

    return decode


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")


def handle_errors(method: Method) -> Method:
    """End the call with the status an exception maps to."""

    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        metrics = self.node.metrics
        try:
            if isinstance(request, Undecodable):
                raise InvalidArgument(request.message)
            result = await method(self, request, context)
        except RoomcastError as error:
            metrics.record_call(name, error.status)
            await context.abort(*grpc_status(error))
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            metrics.record_call(name, grpc.StatusCode.CANCELLED.name)
            raise
        except Exception as error:
            metrics.record_call(name, grpc.StatusCode.INTERNAL.name)
            reference = self.node.fault(error, name)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (ref {reference})")
        metrics.record_call(name, grpc.StatusCode.OK.name)
        return result

    return wrapper  # type: ignore[return-value]
