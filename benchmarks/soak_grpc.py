"""The soak benchmark's gRPC processes: a publishing backend, and Subscribe streams.

:func:`backend` publishes on a schedule (``pacing.schedule``) as a platform
service: unary ``Publish`` and ``PublishBatch`` calls into every kind of
room of every tenant (chats, documents, global rooms, tenant and user
rooms), payloads from a few bytes to about 60 KB, a few nested to the
32-level limit, some kept out of history, some repeated with an
idempotency key (the repeat must answer ``duplicate`` with the same
position). A few batch items are invalid on purpose (NaN, nested 40 levels,
over 64 KiB, a bad room or event name): each must be refused on its own and
never delivered. Every acknowledged event becomes an :class:`~soak_plan.Ack`.

:func:`subscriber` holds two ``Subscribe`` streams (grpcio, blocking, a
thread each): ``**`` as a platform service (every tenant), and a tenant's
service on ``chat.*``, ``document.*.collaboration``, ``global.*`` and
``tenant.<t>.**``. Each records what it receives as a :class:`~soak_plan.Member`
and checks every payload, and that nothing of another tenant arrives.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from multiprocessing.connection import Connection
from typing import Any

import grpc
import uvloop
from pacing import schedule
from soak_link import Tally
from soak_plan import (
    CHATS,
    DOCUMENTS,
    EVENTS,
    GLOBALS,
    Ack,
    Member,
    nested,
    payload,
    payload_problem,
    scope_of,
)

from roomcast.auth import mint_token
from roomcast.v1 import realtime_pb2, realtime_pb2_grpc
from roomcast.wire import field_bytes

__all__ = ["STREAMS", "backend", "subscriber"]

#: The Subscribe streams: name -> (patterns, the tenant of the caller or None for "any").
STREAMS: dict[str, tuple[list[str], str | None]] = {
    "grpc ** (platform)": (["**"], None),
    "grpc t0 patterns": (
        ["chat.*", "document.*.collaboration", "global.*", "tenant.t0.**"],
        "t0",
    ),
}


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# -- the backend -------------------------------------------------------------------


class Backend:
    """What the backend publishes and what it was told."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.rng = random.Random(config["seed"] * 7 + 1)
        self.acks: list[Ack] = []
        self.calls: Counter[str] = Counter()  # by method
        self.refused: Counter[str] = Counter()  # invalid items refused, by code
        self.statuses: Counter[str] = Counter()  # failed calls, by gRPC status
        self.tally = Tally()  # its anomalies
        self.unstored = 0  # acknowledged with offset 0 (skip_history)
        self.duplicates = 0  # idempotent repeats answered as such
        self.sequence = 0

    def request(self, *, valid: bool = True) -> tuple[realtime_pb2.PublishRequest, str, str]:
        """A publish request, its scope, and what is wrong with it ("" when valid)."""
        rng, config = self.rng, self.config
        tenant = rng.choice(config["tenants"])
        roll = rng.random()
        if roll < 0.35:
            room = rng.choice(CHATS)
        elif roll < 0.5:
            room = rng.choice(DOCUMENTS)
        elif roll < 0.65:
            room = rng.choice(GLOBALS)
        elif roll < 0.8:
            room = f"tenant.{tenant}.{rng.choice(['notifications', 'users'])}"
        else:
            user = rng.choice(config["users"][tenant])
            room = f"user.{user}.{rng.choice(['notifications', 'private'])}"
        scope = scope_of(room, tenant)
        self.sequence += 1
        key = f"b:{self.sequence}"
        data = payload(rng, key, [(scope, room)], big=config["big_fraction"])
        event, problem = "backend.update", ""
        if not valid:
            problem = rng.choice(["nan", "deep", "large", "room", "event"])
            data["k"] = f"bad:{key}:{problem}"
            if problem == "nan":
                data["v"] = float(rng.choice(["nan", "inf", "-inf"]))
            elif problem == "deep":
                data["nest"] = nested(rng.randint(33, 60))
            elif problem == "large":
                data["blob"] = "x" * 70_000
            elif problem == "room":
                room = rng.choice(["chat..x", "foo.bar", "chat.c*"])
            else:
                event = "bad event"
        request = realtime_pb2.PublishRequest(room=room, event=event, tenant_id=scope)
        request.payload.update(data)
        request.skip_history = valid and rng.random() < 0.03
        return request, scope, problem

    def record(
        self, request: realtime_pb2.PublishRequest, scope: str, answer: Any, source: str
    ) -> None:
        if request.skip_history:
            self.unstored += 1
            if answer.offset != 0:
                self.tally.anomaly("skip_history stored", f"{request.room} offset {answer.offset}")
            return
        key = (scope, request.room, answer.epoch)
        self.acks.append(Ack(key, answer.offset, answer.id, time.monotonic(), source))

    def failed(self, method: str, error: grpc.aio.AioRpcError) -> None:
        self.statuses[error.code().name] += 1
        self.tally.anomaly(f"{method} failed", f"{error.code().name}: {error.details()}")

    async def guarded(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as error:  # a bug of the benchmark: count it, go on
            self.tally.anomaly("publishing failed", f"{type(error).__name__}: {error}")

    async def publish(self, stub: Any, token: str) -> None:
        """One unary Publish (now and then repeated with an idempotency key)."""
        request, scope, _ = self.request()
        repeat = self.rng.random() < 0.03 and not request.skip_history
        if repeat:
            request.idempotency_key = f"idem-{self.sequence}"
        self.calls["Publish"] += 1
        try:
            answer = await stub.Publish(request, metadata=_metadata(token), timeout=30)
            self.record(request, scope, answer, "publish")
            if repeat:
                self.calls["Publish"] += 1
                again = await stub.Publish(request, metadata=_metadata(token), timeout=30)
                if not again.duplicate or (again.offset, again.id) != (answer.offset, answer.id):
                    self.tally.anomaly(
                        "idempotent repeat answered otherwise", f"{answer} / {again}"
                    )
                else:
                    self.duplicates += 1
        except grpc.aio.AioRpcError as error:
            self.failed("Publish", error)

    async def publish_batch(self, stub: Any, token: str) -> None:
        """One PublishBatch of 2 to 40 items, a few of them invalid."""
        items = [
            self.request(valid=self.rng.random() > 0.06) for _ in range(self.rng.randint(2, 40))
        ]
        # Framed by hand: the protobuf library will not copy a request nested
        # past its own depth limit into the batch, and those are the point.
        batch = b"".join(field_bytes(1, request.SerializeToString()) for request, _, _ in items)
        self.calls["PublishBatch"] += 1
        try:
            answer = await stub(batch, metadata=_metadata(token), timeout=30)
        except grpc.aio.AioRpcError as error:
            self.failed("PublishBatch", error)
            return
        if len(answer.results) != len(items):
            self.tally.anomaly("batch answered otherwise", f"{len(answer.results)} of {len(items)}")
        for (request, scope, problem), result in zip(items, answer.results, strict=False):
            if result.HasField("published"):
                if problem:
                    self.tally.anomaly("invalid item accepted", f"{problem}: {request.room}")
                self.record(request, scope, result.published, "batch")
            elif problem:
                self.refused[result.error.code] += 1
                expected = "RESOURCE_EXHAUSTED" if problem == "large" else "INVALID_ARGUMENT"
                if result.error.code != expected:  # docs/grpc.md, PublishBatch
                    self.tally.anomaly(
                        "invalid item refused otherwise", f"{problem}: {result.error}"
                    )
            else:
                self.tally.anomaly(
                    "valid item refused", f"{result.error.code}: {result.error.message}"
                )


def backend(config: dict[str, Any], control: Connection) -> None:
    """The backend's process: ``ready``, then on ``("go", t0, stop)`` publish until ``stop``."""

    async def run() -> dict[str, Any]:
        token = mint_token(config["secret"], subject="soak-backend", roles=["service"], ttl=7200)
        state = Backend(config)
        async with grpc.aio.insecure_channel(config["grpc"]) as channel:
            await channel.channel_ready()
            stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
            batch_stub: Any = channel.unary_unary(
                "/roomcast.v1.RealtimeService/PublishBatch",
                request_serializer=None,  # bytes as they are
                response_deserializer=realtime_pb2.PublishBatchResponse.FromString,
            )
            loop = asyncio.get_running_loop()
            control.send(("ready",))
            _, start, stop = await loop.run_in_executor(None, control.recv)
            await asyncio.sleep(max(0.0, start - time.monotonic()))
            in_flight: set[asyncio.Task[None]] = set()
            async for _, _ in schedule(config["publish_rate"], stop - time.monotonic()):
                if len(in_flight) >= 32:  # the server is behind: do not pile on
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                batch = state.rng.random() < config["batch_fraction"]
                call = (
                    state.publish_batch(batch_stub, token) if batch else state.publish(stub, token)
                )
                task = loop.create_task(state.guarded(call))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.wait(in_flight)
        return {
            "acks": state.acks,
            "calls": state.calls,
            "refused": state.refused,
            "statuses": state.statuses,
            "tally": state.tally,
            "unstored": state.unstored,
            "duplicates": state.duplicates,
        }

    control.send(uvloop.run(run()))


# -- the Subscribe streams ---------------------------------------------------------------


class Stream:
    """One Subscribe stream in a thread of its own."""

    def __init__(self, config: dict[str, Any], name: str) -> None:
        patterns, tenant = STREAMS[name]
        self.patterns, self.tenant = patterns, tenant
        self.token = mint_token(
            config["secret"], subject="soak-subscriber", roles=["service"], tenant=tenant, ttl=7200
        )
        self.member = Member(name, "grpc", patterns=(patterns, tenant))
        self.ready = threading.Event()
        self.tally = Tally()  # its anomalies
        self.unstored = 0
        self._call: Any = None
        self._stopping = False
        self._channel = grpc.insecure_channel(config["grpc"])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stub = realtime_pb2_grpc.RealtimeServiceStub(self._channel)
        last: dict[tuple[str, str, str], int] = {}
        while not self._stopping:
            request = realtime_pb2.SubscribeRequest(rooms=self.patterns)
            self._call = stub.Subscribe(request, metadata=_metadata(self.token))
            try:
                for response in self._call:
                    if response.HasField("subscribed"):
                        self.ready.set()
                    for event in response.events:
                        self._event(event, last)
            except grpc.RpcError as error:
                if self._stopping:
                    return
                # INTERNAL is what a failed decode ends with; RESOURCE_EXHAUSTED, a
                # stream that fell behind. It owes nothing more: its coverage no
                # longer starts with the run.
                self.tally.anomaly("ended by the server", f"{error.code().name}: {error.details()}")
                self.member.patterns = None
                time.sleep(0.5)

    def _event(self, event: Any, last: dict[tuple[str, str, str], int]) -> None:
        scope = event.tenant_id
        if self.tenant is not None and scope not in (self.tenant, ""):
            self.tally.anomaly("event of another tenant", f"{scope}/{event.room}")
        data = dict(event.payload.items())
        if event.event in EVENTS and (problem := payload_problem(data, scope, event.room)):
            self.tally.anomaly("bad payload", f"{event.room} offset {event.offset}: {problem}")
        if event.offset == 0:
            self.unstored += 1
            return
        key = (scope, event.room, event.epoch)
        if event.offset <= last.get(key, 0):
            self.tally.anomaly("out of order", f"{key} {event.offset} after {last[key]}")
        last[key] = max(event.offset, last.get(key, 0))
        self.member.receive(key, event.offset)

    def stop(self) -> None:
        self._stopping = True
        if self._call is not None:
            self._call.cancel()
        self.thread.join(10)
        self._channel.close()


def subscriber(config: dict[str, Any], control: Connection) -> None:
    """The streams' process: ``ready`` once every stream is subscribed; on ``finish``, results."""
    streams = [Stream(config, name) for name in STREAMS]
    for stream in streams:
        if not stream.ready.wait(30):
            control.send(("failed", f"{stream.member.name} did not subscribe"))
            return
    control.send(("ready",))
    control.recv()
    for stream in streams:
        stream.stop()
    control.send([{"member": s.member, "tally": s.tally, "unstored": s.unstored} for s in streams])
