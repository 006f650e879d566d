"""Counters on the hot path, and snapshots of them (with system figures) on demand.

Recording is a few integer additions and, per batch of deliveries, one
histogram observation; everything costly (psutil, percentiles, rates) happens
in :meth:`Collector.sample`, every ``metrics_interval``. Histograms are kept
twice: per interval (for the snapshot's percentiles) and since start (for
Prometheus, whose histograms only ever grow).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from .histogram import LatencyHistogram

__all__ = [
    "Collector",
    "Counters",
    "Gauges",
    "Idle",
    "RoomSize",
    "Snapshot",
    "SystemSample",
    "snapshot_json",
]

# gRPC status of a call that succeeded (grpc.StatusCode.OK.name).
OK = "OK"


@dataclass(slots=True)
class Counters:
    """Monotonic totals since the node started."""

    messages_in: int = 0
    messages_out: int = 0
    slow_consumers: int = 0
    rate_limited: int = 0
    abuse_closes: int = 0
    auth_failures: int = 0
    activities: int = 0
    # Unexpected errors (each logged, rate-limited: roomcast.faults).
    internal_errors: int = 0
    # Expensive reads and connections refused by the memory guard.
    overloaded: int = 0


@dataclass(frozen=True, slots=True)
class SystemSample:
    """Host and process figures."""

    cpu_percent: float
    memory_percent: float
    load_average: tuple[float, float, float]
    process_rss_bytes: int
    open_fds: int


@dataclass(frozen=True, slots=True)
class RoomSize:
    """A room and how many connections are in it."""

    name: str
    tenant_id: str
    members: int


@dataclass(frozen=True, slots=True)
class Gauges:
    """What the node holds now; the node gathers them for each sample."""

    connections: int = 0
    connections_by_tenant: Mapping[str, int] = field(default_factory=dict)
    subscriptions: int = 0
    rooms: int = 0
    largest_rooms: Sequence[RoomSize] = ()
    firing_alerts: int = 0
    broker_rtt: float = 0.0
    broker_healthy: bool = True


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One sample of the node."""

    time: float
    node_id: str
    uptime_seconds: float
    system: SystemSample
    gauges: Gauges
    messages_in_per_second: float
    messages_out_per_second: float
    grpc_calls_per_second: Mapping[str, float]
    grpc_error_rate: float
    grpc_calls: int  # in the interval, for alerts that need enough calls to judge
    latency_p50: float
    latency_p95: float
    latency_p99: float
    latency_count: int
    broker_publish_p50: float
    broker_publish_p95: float
    broker_publish_p99: float
    broker_publish_count: int
    totals: Counters = field(default_factory=Counters)

    @property
    def connections(self) -> int:
        """Open connections."""
        return self.gauges.connections

    @property
    def subscriptions(self) -> int:
        """Open Subscribe streams."""
        return self.gauges.subscriptions

    @property
    def rooms(self) -> int:
        """Rooms with members or subscribers."""
        return self.gauges.rooms


class Collector:
    """Collects the node's figures.

    Args:
        node_id: the node's identity, reported in snapshots.
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.counters = Counters()
        # (method, status code name) -> calls since start.
        self.calls: dict[tuple[str, str], int] = {}
        self.latency = LatencyHistogram()
        self.broker_publish = LatencyHistogram()
        self.latency_total = LatencyHistogram()
        self.broker_publish_total = LatencyHistogram()
        self.started = time.time()
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)  # the first reading primes the counters
        self._last_time = time.monotonic()
        self._last_in = 0
        self._last_out = 0
        self._last_calls: dict[tuple[str, str], int] = {}
        self.latest: Snapshot | None = None

    # -- the hot path ------------------------------------------------------------

    def record_delivery(self, accepted_ns: int, now_ns: int, count: int = 1) -> None:
        """``count`` events accepted at ``accepted_ns`` were handed to a recipient."""
        self.counters.messages_out += count
        self.latency.observe_many(max(0, now_ns - accepted_ns) / 1e9, count)

    def record_deliveries(self, accepted_ns: Iterable[int], now_ns: int) -> None:
        """Events accepted at these times were handed to a recipient at ``now_ns``.

        A batch's events share their acceptance time, so runs of equal times
        are recorded as one observation of many.
        """
        run_ns, run = 0, 0
        for event_ns in accepted_ns:
            if event_ns != run_ns:
                if run:
                    self.record_delivery(run_ns, now_ns, run)
                run_ns, run = event_ns, 0
            run += 1
        if run:
            self.record_delivery(run_ns, now_ns, run)

    def record_latencies(self, accepted_ns: Iterable[int], now_ns: int) -> None:
        """Publish→deliver latencies of events written now, without counting deliveries."""
        run_ns, run = 0, 0
        for event_ns in accepted_ns:
            if event_ns != run_ns:
                if run:
                    self.latency.observe_many(max(0, now_ns - run_ns) / 1e9, run)
                run_ns, run = event_ns, 0
            run += 1
        if run:
            self.latency.observe_many(max(0, now_ns - run_ns) / 1e9, run)

    def record_broker_publish(self, seconds: float) -> None:
        """The broker took ``seconds`` to accept a publish (or a batch's chunk)."""
        self.broker_publish.observe(seconds)

    def record_call(self, method: str, code: str) -> None:
        """A gRPC call to ``method`` ended with status ``code`` (a StatusCode name)."""
        key = (method, code)
        self.calls[key] = self.calls.get(key, 0) + 1

    # -- sampling ------------------------------------------------------------------

    def _system(self) -> SystemSample:
        process = self._process
        with process.oneshot():
            rss = process.memory_info().rss
            fds = process.num_fds() if hasattr(process, "num_fds") else 0
        return SystemSample(
            cpu_percent=psutil.cpu_percent(None),
            memory_percent=psutil.virtual_memory().percent,
            load_average=psutil.getloadavg(),
            process_rss_bytes=rss,
            open_fds=fds,
        )

    def sample(self, gauges: Gauges) -> Snapshot:
        """Take a snapshot; rates and percentiles cover the time since the last one."""
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-9)
        counters = self.counters
        latency, self.latency = self.latency, LatencyHistogram()
        broker, self.broker_publish = self.broker_publish, LatencyHistogram()
        self.latency_total.merge(latency)
        self.broker_publish_total.merge(broker)
        calls = {key: n - self._last_calls.get(key, 0) for key, n in self.calls.items()}
        per_method: dict[str, float] = {}
        failed = 0
        for (method, code), n in calls.items():
            if n:
                per_method[method] = per_method.get(method, 0.0) + n / elapsed
                if code != OK:
                    failed += n
        interval_calls = sum(calls.values())
        snapshot = Snapshot(
            time=time.time(),
            node_id=self.node_id,
            uptime_seconds=time.time() - self.started,
            system=self._system(),
            gauges=gauges,
            messages_in_per_second=(counters.messages_in - self._last_in) / elapsed,
            messages_out_per_second=(counters.messages_out - self._last_out) / elapsed,
            grpc_calls_per_second=per_method,
            grpc_error_rate=failed / interval_calls if interval_calls else 0.0,
            grpc_calls=interval_calls,
            latency_p50=latency.percentile(50),
            latency_p95=latency.percentile(95),
            latency_p99=latency.percentile(99),
            latency_count=latency.count,
            broker_publish_p50=broker.percentile(50),
            broker_publish_p95=broker.percentile(95),
            broker_publish_p99=broker.percentile(99),
            broker_publish_count=broker.count,
            totals=Counters(**asdict(counters)),
        )
        self._last_time, self._last_in, self._last_out = (
            now,
            counters.messages_in,
            counters.messages_out,
        )
        self._last_calls = dict(self.calls)
        self.latest = snapshot
        return snapshot


class Idle(Collector):
    """A collector that records nothing on the hot path (``metrics = false``).

    For measuring what metrics cost: counters still count, but no latency,
    broker or call is observed, and the node publishes no snapshots.
    """

    def record_delivery(self, accepted_ns: int, now_ns: int, count: int = 1) -> None:
        self.counters.messages_out += count

    def record_deliveries(self, accepted_ns: Iterable[int], now_ns: int) -> None:
        return None

    def record_latencies(self, accepted_ns: Iterable[int], now_ns: int) -> None:
        return None

    def record_broker_publish(self, seconds: float) -> None:
        return None

    def record_call(self, method: str, code: str) -> None:
        return None


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot as the payload of a ``metrics.snapshot`` event (plain JSON)."""
    system, gauges, totals = snapshot.system, snapshot.gauges, snapshot.totals
    return {
        "node_id": snapshot.node_id,
        "time": round(snapshot.time, 3),
        "uptime_seconds": round(snapshot.uptime_seconds, 1),
        "system": {
            "cpu_percent": system.cpu_percent,
            "memory_percent": system.memory_percent,
            "load_average": list(system.load_average),
            "process_rss_bytes": system.process_rss_bytes,
            "open_fds": system.open_fds,
        },
        "connections": gauges.connections,
        "connections_by_tenant": dict(gauges.connections_by_tenant),
        "subscriptions": gauges.subscriptions,
        "rooms": gauges.rooms,
        "largest_rooms": [asdict(room) for room in gauges.largest_rooms],
        "messages_in_per_second": round(snapshot.messages_in_per_second, 2),
        "messages_out_per_second": round(snapshot.messages_out_per_second, 2),
        "latency_ms": {
            "p50": _ms(snapshot.latency_p50),
            "p95": _ms(snapshot.latency_p95),
            "p99": _ms(snapshot.latency_p99),
            "count": snapshot.latency_count,
        },
        "grpc": {
            "calls_per_second": {m: round(r, 2) for m, r in snapshot.grpc_calls_per_second.items()},
            "error_rate": round(snapshot.grpc_error_rate, 4),
            "subscribe_streams": gauges.subscriptions,
        },
        "broker": {
            "healthy": gauges.broker_healthy,
            "rtt_ms": _ms(gauges.broker_rtt),
            "publish_ms": {
                "p50": _ms(snapshot.broker_publish_p50),
                "p95": _ms(snapshot.broker_publish_p95),
                "p99": _ms(snapshot.broker_publish_p99),
                "count": snapshot.broker_publish_count,
            },
        },
        "firing_alerts": gauges.firing_alerts,
        "totals": asdict(totals),
    }
