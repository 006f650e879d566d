"""What metrics collection costs the fan-out, measured in-process.

On this 2-core VM the fan-out benchmark's CPU per delivery varies by 5-10 %
between rounds (most of it kernel time, which metrics never touch), so an
end-to-end A/B (``fanout.py --servers roomcast,no-metrics``) cannot resolve
a 2 % difference. This program times the two things metrics add, on a real
:class:`~roomcast.node.Node` (memory broker):

- the hot path: one ``record_latencies`` call per write turn of the bridge
  (the histogram observes each event once per turn, not once per delivery);
- the sampler: one ``Monitor.tick`` per interval (psutil, gauges over the
  node's presence, alert rules, and the ``metrics.snapshot`` publish to two
  rooms), with ``--connections`` connections' presence in place.

and sets them against the fan-out's own cost, from ``fanout.py``'s figures
(``--per-delivery-us`` server CPU per delivery, ``--subscribers``,
``--rate``).

    .venv/bin/python benchmarks/metrics_cost.py [--connections 1000] [--per-delivery-us 12]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import uvloop

from roomcast.auth import TokenVerifier
from roomcast.brokers.memory import MemoryBroker
from roomcast.config import Settings
from roomcast.node import Node
from roomcast.policy import Policy
from roomcast.presence import ConnectionId, Member
from roomcast.rooms import Room, RoomName, TenantId

__all__ = ["main"]

SECRET = "metrics-cost-0123456789abcdef0123456789"
TENANT = TenantId("bench")


async def build(connections: int) -> Node:
    node = Node(Settings(jwt_secret=SECRET), Policy(), TokenVerifier(secret=SECRET), MemoryBroker())
    await node.broker.start(node._fan_out)
    now = time.time()
    for i in range(connections):
        member = Member(ConnectionId(f"c{i}"), f"u{i}", TENANT, now)
        node.presence.connect(member)
        # The rooms fanout.py's subscribers are in: their own and the benchmark's.
        own = f"user.u{i}.private", f"user.u{i}.notifications"
        for name in (*own, "tenant.bench.users", "tenant.bench.notifications", "global.bench"):
            node.presence.join(Room.of(RoomName(name), TENANT).key, member, now)
    return node


def hot_path_ns(node: Node, turns: int) -> float:
    """ns per write turn that carries one event (fanout.py's case: one event per turn)."""
    collector = node.metrics
    accepted = [time.time_ns()]
    best = []
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(turns):
            collector.record_latencies(accepted, time.time_ns())
        best.append((time.perf_counter_ns() - started) / turns)
    return min(best)


async def tick_ms(node: Node, ticks: int) -> float:
    """Median ms of one sampling round."""
    times = []
    for _ in range(ticks):
        started = time.perf_counter()
        await node.monitor.tick()
        times.append((time.perf_counter() - started) * 1000)
    return float(statistics.median(times))


async def run(args: argparse.Namespace) -> None:
    # The hot-path loop reuses one acceptance time, so latencies grow and the
    # p99 rule would fire and log: not what is measured here.
    logging.getLogger("roomcast").setLevel(logging.ERROR)
    node = await build(args.connections)
    per_turn_ns = hot_path_ns(node, args.turns)
    per_tick_ms = await tick_ms(node, args.ticks)
    await node.close()

    fan_out_us = args.subscribers * args.per_delivery_us  # server CPU for one event's fan-out
    hot = per_turn_ns / 1000 / fan_out_us
    server_cores = args.rate * fan_out_us / 1e6
    sampler = per_tick_ms / 1000 / node.settings.metrics_interval / server_cores
    print(
        f"metrics cost, {args.connections:,} connections' presence, "
        f"sampled every {node.settings.metrics_interval:g} s"
    )
    print(
        f"  hot path: {per_turn_ns:,.0f} ns per write turn, against {fan_out_us / 1000:.1f} ms of"
        f" server CPU to fan one event out to {args.subscribers:,} subscribers: {hot:.4%}"
    )
    print(
        f"  sampler: {per_tick_ms:.2f} ms per round, every {node.settings.metrics_interval:g} s,"
        f" against the server's {server_cores:.2f} cores at {args.rate:g} publishes/s:"
        f" {sampler:.3%}"
    )
    total = hot + sampler
    verdict = "met" if total < 0.02 else "MISSED"
    print(f"  total {total:.3%} of fan-out throughput (target < 2%: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=40.0, help="publishes per second")
    parser.add_argument(
        "--per-delivery-us", type=float, default=12.0, help="fanout.py's server CPU per delivery"
    )
    parser.add_argument("--turns", type=int, default=200_000)
    parser.add_argument("--ticks", type=int, default=50)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
