"""Counters on the hot path, and snapshots of them (with system figures) on demand.

Recording is a few integer additions; everything costly (psutil, percentiles,
rates) happens in :meth:`Collector.sample`, every ``metrics_interval``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

from .histogram import LatencyHistogram

__all__ = ["Collector", "Counters", "Snapshot", "SystemSample"]


@dataclass(slots=True)
class Counters:
    """Monotonic totals since the node started."""

    messages_in: int = 0
    messages_out: int = 0
    slow_consumers: int = 0


@dataclass(frozen=True, slots=True)
class SystemSample:
    """Host and process figures."""

    cpu_percent: float
    memory_percent: float
    load_average: tuple[float, float, float]
    process_rss_bytes: int
    open_fds: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One sample of the node."""

    time: float
    node_id: str
    uptime_seconds: float
    system: SystemSample
    connections: int
    subscriptions: int
    rooms: int
    messages_in_per_second: float
    messages_out_per_second: float
    latency_p50: float
    latency_p95: float
    latency_p99: float
    latency_count: int
    totals: Counters = field(default_factory=Counters)


class Collector:
    """Collects the node's figures.

    Args:
        node_id: the node's identity, reported in snapshots.
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.counters = Counters()
        self.latency = LatencyHistogram()
        self.started = time.time()
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)  # the first reading primes the counters
        self._last_time = time.monotonic()
        self._last_in = 0
        self._last_out = 0
        self.latest: Snapshot | None = None

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

    def sample(self, *, connections: int, subscriptions: int, rooms: int) -> Snapshot:
        """Take a snapshot; rates and percentiles cover the time since the last one."""
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-9)
        counters = self.counters
        latency, self.latency = self.latency, LatencyHistogram()
        snapshot = Snapshot(
            time=time.time(),
            node_id=self.node_id,
            uptime_seconds=time.time() - self.started,
            system=self._system(),
            connections=connections,
            subscriptions=subscriptions,
            rooms=rooms,
            messages_in_per_second=(counters.messages_in - self._last_in) / elapsed,
            messages_out_per_second=(counters.messages_out - self._last_out) / elapsed,
            latency_p50=latency.percentile(50),
            latency_p95=latency.percentile(95),
            latency_p99=latency.percentile(99),
            latency_count=latency.count,
            totals=Counters(counters.messages_in, counters.messages_out, counters.slow_consumers),
        )
        self._last_time, self._last_in, self._last_out = (
            now,
            counters.messages_in,
            counters.messages_out,
        )
        self.latest = snapshot
        return snapshot
