"""SIGTERM drains: streams end with UNAVAILABLE, the process exits cleanly."""

from __future__ import annotations

import signal
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.grpc import Stream, bearer
from support.server import start_server
from support.waiting import UNIT

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc


async def test_sigterm_ends_streams_and_exits_zero() -> None:
    server = start_server(env={"ROOMCAST_SHUTDOWN_GRACE": "5"})
    service = server.token("svc", "service")
    try:
        async with server.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            stream = await Stream(channel, service, ["global.shutdown"]).ready()
            realtime = realtime_pb2_grpc.RealtimeServiceStub(channel)
            await realtime.Publish(
                realtime_pb2.PublishRequest(room="global.shutdown", event="before"),
                metadata=bearer(service),
            )
            await stream.wait_for(1)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            error = await stream.ended(within=10 * UNIT)
            assert error is not None
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in (error.details() or "")
            assert [e.event for e in stream.events] == ["before"]
        assert server.process.wait(10 * UNIT) == 0
        assert time.monotonic() - started < 6 * UNIT
        assert "Traceback" not in server.log
    finally:
        server.stop()
