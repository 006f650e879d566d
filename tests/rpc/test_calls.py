"""What every servicer method shares: the caller, and errors as statuses (rpc/calls.py).

A probe service, served by real grpcio inside the process
(:mod:`support.grpc_local`), runs what each test gives it under
``handle_errors``; the client sees the status on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from support.grpc_local import grpc_channel
from support.local_node import FakeConnection, local_node
from support.tokens import token
from support.waiting import UNIT, eventually

from roomcast import errors
from roomcast.errors import RoomcastError
from roomcast.node import Node
from roomcast.presence import ConnectionId
from roomcast.rooms import Room, RoomName
from roomcast.rpc.calls import Undecodable, authenticate, decoding, grpc_status, handle_errors
from roomcast.v1 import admin_pb2, event_pb2, realtime_pb2

Action = Callable[[Node, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class Probe:
    """A servicer with one method, ``Call``, that runs the test's action."""

    def __init__(self, node: Node, action: Action) -> None:
        self.node = node
        self.action = action
        self.requests: list[Any] = []

    @handle_errors
    async def Call(  # noqa: N802 (a gRPC method name)
        self, request: realtime_pb2.LeaveRoomRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.TrackActivityResponse:
        self.requests.append(request)
        result: admin_pb2.TrackActivityResponse = await self.action(self.node, request, context)
        return result

    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            self.Call,
            request_deserializer=decoding(realtime_pb2.LeaveRoomRequest.FromString, "LeaveRoom"),
            response_serializer=admin_pb2.TrackActivityResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Probe", {"Call": handler}),)
        )


Call = Callable[..., Awaitable[admin_pb2.TrackActivityResponse]]


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., Awaitable[tuple[Probe, Call]]]]:
    """``await served(action, **settings)``: a probe on a fresh node, and its call."""
    async with contextlib.AsyncExitStack() as stack:

        async def serve(action: Action, **settings: Any) -> tuple[Probe, Call]:
            probe = Probe(await local_node(**settings), action)
            channel = await stack.enter_async_context(grpc_channel(probe.register))
            call = channel.unary_unary(
                "/test.Probe/Call",
                request_serializer=lambda message: (
                    message if isinstance(message, bytes) else message.SerializeToString()
                ),
                response_deserializer=admin_pb2.TrackActivityResponse.FromString,
            )
            return probe, call

        yield serve


async def whoami(node: Node, request: Any, context: Any) -> admin_pb2.TrackActivityResponse:
    principal = authenticate(node, context)
    return admin_pb2.TrackActivityResponse(id=f"{principal.subject}/{principal.tenant}")


def raising(error: BaseException) -> Action:
    async def action(node: Node, request: Any, context: Any) -> Any:
        raise error

    return action


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), raised.value.details() or ""


REQUEST = realtime_pb2.LeaveRoomRequest(room="chat.x")


# -- who is calling --------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_a_bearer_token_names_the_caller(served: Any, scheme: str) -> None:
    _, call = await served(whoami)
    metadata = (("authorization", f"{scheme} {token('alice')}"),)
    assert (await call(REQUEST, metadata=metadata)).id == "alice/acme"


@pytest.mark.parametrize(
    ("metadata", "details"),
    [
        ((), "missing 'authorization: Bearer <token>' metadata"),
        (
            (("authorization", "Basic YWxpY2U6cHc="),),
            "authorization metadata must be 'Bearer <token>'",
        ),
        ((("authorization", "Bearer   "),), "authorization metadata must be 'Bearer <token>'"),
        ((("authorization", "Bearer not-a-token"),), "token is malformed or cannot be verified"),
    ],
)
async def test_a_call_without_a_valid_bearer_token_is_unauthenticated(
    served: Any, metadata: tuple[tuple[str, str], ...], details: str
) -> None:
    probe, call = await served(whoami)
    assert await status_of(call(REQUEST, metadata=metadata)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        details,
    )
    assert probe.node.metrics.counters.auth_failures == 1
    assert probe.node.metrics.calls == {("Call", "UNAUTHENTICATED"): 1}


async def security_alerts(node: Node) -> FakeConnection:
    watcher = FakeConnection(ConnectionId("security"))
    node.hub.add(Room.of(RoomName("platform.security"), None), watcher)
    return watcher


def alerted_addresses(watcher: FakeConnection) -> list[str]:
    events = [event_pb2.Event.FromString(p.data) for p in watcher.delivered]
    return [e.payload["ip_address"] for e in events if e.event == "security.alert"]


async def test_failures_are_reported_with_the_callers_address(served: Any) -> None:
    probe, call = await served(whoami, failed_login_limit=2)
    watcher = await security_alerts(probe.node)
    # No proxy is trusted: what the caller says it forwards for is not believed.
    metadata = (("authorization", "Bearer forged"), ("x-forwarded-for", "203.0.113.9"))
    for _ in range(3):
        await status_of(call(REQUEST, metadata=metadata))
    await eventually(lambda: alerted_addresses(watcher), 2 * UNIT)
    assert alerted_addresses(watcher) == ["127.0.0.1"]


async def test_a_forwarded_address_is_believed_from_a_trusted_proxy_only(served: Any) -> None:
    probe, call = await served(whoami, failed_login_limit=1, trusted_proxies="127.0.0.1")
    watcher = await security_alerts(probe.node)
    metadata = (("authorization", "Bearer forged"), ("x-forwarded-for", "203.0.113.9"))
    for _ in range(2):
        await status_of(call(REQUEST, metadata=metadata))
    await eventually(lambda: alerted_addresses(watcher), 2 * UNIT)
    assert alerted_addresses(watcher) == ["203.0.113.9"]


# -- errors as statuses ----------------------------------------------------------------

ERRORS = [getattr(errors, name) for name in errors.__all__]


@pytest.mark.parametrize("kind", ERRORS, ids=[kind.__name__ for kind in ERRORS])
def test_every_error_maps_to_a_grpc_status(kind: type[RoomcastError]) -> None:
    code, details = grpc_status(kind("what the client reads"))
    assert code.name == kind.status
    assert details == "what the client reads"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.Forbidden("may not publish to room 'chat.x'"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.NotFound("connection_id: 'c1' is not connected"), grpc.StatusCode.NOT_FOUND),
        (errors.TooLarge("payload: too large"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.Unavailable("server is shutting down"), grpc.StatusCode.UNAVAILABLE),
        (errors.BrokerTimeout("the broker did not answer"), grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
async def test_a_refusal_ends_the_call_with_its_status_and_message(
    served: Any, error: RoomcastError, code: grpc.StatusCode
) -> None:
    probe, call = await served(raising(error))
    assert await status_of(call(REQUEST)) == (code, error.message)
    assert probe.node.metrics.calls == {("Call", code.name): 1}


async def test_an_unexpected_error_ends_with_internal_and_a_reference_only(served: Any) -> None:
    probe, call = await served(raising(KeyError("secret-key at /srv/config")))
    code, details = await status_of(call(REQUEST))
    assert code is grpc.StatusCode.INTERNAL
    assert details.startswith("internal error (ref ")
    assert details.endswith(")")
    assert "secret" not in details
    assert "KeyError" not in details
    assert probe.node.metrics.counters.internal_errors == 1
    assert probe.node.metrics.calls == {("Call", "INTERNAL"): 1}


async def test_bytes_that_are_no_request_are_invalid_and_never_reach_the_method(
    served: Any,
) -> None:
    probe, call = await served(whoami)
    code, details = await status_of(call(b"\xff\xff\xff"))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("request: not a valid LeaveRoom")
    assert probe.requests == []


async def test_a_call_that_succeeds_is_counted_ok(served: Any) -> None:
    probe, call = await served(whoami)
    await call(REQUEST, metadata=(("authorization", f"Bearer {token('alice')}"),))
    assert probe.node.metrics.calls == {("Call", "OK"): 1}


async def test_a_call_the_client_abandons_is_counted_cancelled(served: Any) -> None:
    started = asyncio.Event()

    async def forever(node: Node, request: Any, context: Any) -> Any:
        started.set()
        await asyncio.Event().wait()

    probe, call = await served(forever)
    pending = call(REQUEST)
    await asyncio.wait_for(started.wait(), 2 * UNIT)
    pending.cancel()
    await eventually(lambda: probe.node.metrics.calls == {("Call", "CANCELLED"): 1}, 2 * UNIT)


# -- decoding -------------------------------------------------------------------------


def test_decoding_reads_a_request_and_answers_bad_bytes_with_undecodable() -> None:
    decode = decoding(realtime_pb2.JoinRoomRequest.FromString, "JoinRoomRequest")
    request = realtime_pb2.JoinRoomRequest(room="chat.x", user_id="alice")
    assert decode(request.SerializeToString()) == request
    refused = decode(b"\x0a\x05ab")  # a string field that claims 5 bytes and has 2
    assert isinstance(refused, Undecodable)
    assert refused.message.startswith("request: not a valid JoinRoomRequest")
