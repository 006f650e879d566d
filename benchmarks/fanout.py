"""Fan-out benchmark: one gRPC publisher, N WebSocket subscribers in one room.

Each round starts a real ``roomcast serve`` (memory broker), opens N
WebSocket subscribers in one room from a separate load-generator process
(``ws_load.py``: frames counted from their headers, one event in
``--sample-every`` decoded for latency), and publishes at ``--rate`` over
gRPC from a third process, each event carrying the publisher's send time
(monotonic µs, one clock for all processes of the machine). Then it does the
same against the bare ``websockets.broadcast()`` reference
(``broadcast_reference.py``, publishing from a timer), and prints the ratio
of deliveries per server CPU-second. Several rounds alternate the two
servers; the summary is the median.

Reported per server: deliveries/s, deliveries per server CPU-second (psutil
on the server's pid, every thread), publish→receive latency p50/p99 (the
sample), server RSS per connection (after the subscribers joined, less
before they connected), and the CPU of the load generator, the publisher
and everything else on the machine (to show none of them was the limit).

``--mode memory`` instead opens ``--connections`` idle authenticated
connections (no room joined beyond the connection's own) and reports server
RSS per connection, for roomcast and the reference.

    .venv/bin/python benchmarks/fanout.py [--subscribers 1000] [--rate 100] [--rounds 3]
    .venv/bin/python benchmarks/fanout.py --mode memory [--connections 10000]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

import psutil
from fanout_processes import (
    SPAWN,
    LoadGenerator,
    Server,
    open_connections,
    publisher,
    samples,
    start_redis,
    start_reference,
    start_roomcast,
    totals,
)

__all__ = ["main"]

PER_PROCESS = 5_000  # connections one load-generator process opens at most
MIB = 1024 * 1024


# -- what runs -----------------------------------------------------------------


@dataclass
class Deployment:
    """One configuration under test: a server, or roomcast nodes sharing a Redis.

    Subscribers connect to every node (``--subscribers`` each); the publisher
    talks to the first. Server CPU is that of every process here.
    """

    name: str
    nodes: list[Server]
    support: list[Server] = field(default_factory=list)  # a Redis the nodes share

    @property
    def entry(self) -> Server:
        return self.nodes[0]

    def processes(self) -> list[psutil.Process]:
        return [server.psutil for server in self.nodes + self.support]

    def stop(self) -> None:
        for server in self.nodes + self.support:
            server.stop()


def two_nodes() -> Deployment:
    """Nodes A and B on a Redis of their own; events published on A cross to B."""
    redis = start_redis()
    url = f"redis://127.0.0.1:{redis.port}/0"
    first = start_roomcast({"broker": url}, name="node A")
    second = start_roomcast({"broker": url}, name="node B", secret=first.secret)
    return Deployment("redis", [first, second], [redis])


DEPLOYMENTS: dict[str, Callable[[argparse.Namespace], Deployment]] = {
    "roomcast": lambda args: Deployment("roomcast", [start_roomcast()]),
    "reference": lambda args: Deployment(
        "reference", [start_reference(args.reference_loop, args.text)]
    ),
    # Metrics collection off (the sampling task and the hot path's
    # histogram): what metrics cost is the difference from "roomcast".
    "no-metrics": lambda args: Deployment(
        "no-metrics", [start_roomcast({"metrics": "false"}, name="no-metrics")]
    ),
    "redis": lambda args: two_nodes(),
}


# -- measuring -----------------------------------------------------------------


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def kernel(process: psutil.Process) -> float:
    return float(process.cpu_times().system)


def machine_busy() -> tuple[float, float]:
    """CPU-seconds the machine spent in processes, and in interrupts (all cores).

    Interrupt time (mostly the network's softirqs: on loopback, the receiving
    half of TCP) is charged to no process.
    """
    times = psutil.cpu_times()
    processes = times.user + times.nice + times.system
    return float(processes), float(getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0))


@dataclass
class Snapshot:
    wall: float
    server: float
    server_kernel: float
    generators: float
    generators_kernel: float
    publisher: float
    machine: float
    interrupts: float
    events: int
    event_bytes: int

    @classmethod
    def take(
        cls,
        deployment: Deployment,
        generators: list[LoadGenerator],
        publisher: psutil.Process | None,
    ) -> Snapshot:
        found = totals(generators)
        servers = deployment.processes()
        return cls(
            time.perf_counter(),
            sum(cpu(p) for p in servers),
            sum(kernel(p) for p in servers),
            sum(cpu(g.psutil) for g in generators),
            sum(kernel(g.psutil) for g in generators),
            cpu(publisher) if publisher is not None else 0.0,
            *machine_busy(),
            found.events,
            found.event_bytes,
        )


@dataclass
class Result:
    """One server's figures in one round."""

    name: str
    deliveries_per_s: float
    per_cpu_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_per_connection_kib: float
    server_cpu: float  # fraction of one core
    server_kernel: float  # of which in the kernel
    generator_cpu: float
    generator_kernel: float
    publisher_cpu: float
    other_cpu: float  # other processes, in cores
    interrupt_cpu: float  # interrupts (charged to no process), in cores
    publishes_per_s: float
    frame_bytes: float
    delivered: int
    expected: int
    expected_at_most: int
    failed: int
    samples: int
    extra: dict[str, float] = field(default_factory=dict)


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


def run_fanout(deployment: Deployment, args: argparse.Namespace) -> Result:
    """Subscribe, publish, measure one deployment."""
    entry = deployment.entry
    rss_before = entry.psutil.memory_info().rss
    by_node: list[list[LoadGenerator]] = []
    generators: list[LoadGenerator] = []
    publishing: BaseProcess | None = None
    try:
        took = 0.0
        for node in deployment.nodes:
            opened, seconds = open_connections(
                node, args.subscribers, args.room, args.sample_every, args.client_processes
            )
            by_node.append(opened)
            generators += opened
            took += seconds
        time.sleep(1.0)  # the last presence announcements reach everyone
        rss_joined = entry.psutil.memory_info().rss
        base = totals(generators).events
        total_seconds = args.warmup + args.seconds
        results = SPAWN.Queue()
        publisher_process: psutil.Process | None = None
        if entry.grpc:
            from roomcast.auth import mint_token

            token = mint_token(entry.secret, subject="bench", roles=["service"], ttl=3600)
            process = publishing = SPAWN.Process(
                target=publisher,
                args=(entry.grpc, token, args.room, args.rate, total_seconds, args.text, results),
            )
            process.start()
            if results.get(timeout=30) != "ready":
                raise RuntimeError("publisher did not connect")
            publisher_process = psutil.Process(process.pid)
        else:
            assert entry.process.stdin is not None
            entry.process.stdin.write(f"publish {args.rate} {total_seconds}\n")
            entry.process.stdin.flush()
        time.sleep(args.warmup)
        samples(generators)  # drop the warm-up's
        first = Snapshot.take(deployment, generators, publisher_process)
        spy = profile(entry, args) if args.profile else None
        time.sleep(args.seconds)
        last = Snapshot.take(deployment, generators, publisher_process)
        if spy is not None:
            spy.wait()
        sampled_by_node = [samples(opened) for opened in by_node]
        if publishing is not None:
            published, failed, round_trips, late = results.get(timeout=120)
        else:
            failed = 0
            assert entry.process.stdout is not None
            published = int(entry.process.stdout.readline().split()[1])
            round_trips, late = [], []
        subscribers = args.subscribers * len(deployment.nodes)
        expected = published * subscribers
        # Publishes that failed (timed out) may still have been delivered.
        expected_at_most = (published + failed) * subscribers
        deadline = time.monotonic() + 20
        delivered = totals(generators).events - base
        while delivered < expected and time.monotonic() < deadline:
            time.sleep(0.2)
            delivered = totals(generators).events - base
    finally:
        for generator in generators:
            generator.close()
        if publishing is not None:
            publishing.join(10)
    wall = last.wall - first.wall
    events = last.events - first.events
    sampled = [sample for node in sampled_by_node for sample in node]
    latencies = [total for total, _, _ in sampled]
    accepted = [accept for _, accept, _ in sampled]
    if args.dump_samples:
        with open(args.dump_samples, "a") as dump:
            dump.writelines(
                f"{deployment.name} {n} {total} {accept}\n" for total, accept, n in sampled
            )
    extra = {
        "connect_s": took,
        "accept_p50_ms": percentile(accepted, 0.5) / 1000,
        "accept_p99_ms": percentile(accepted, 0.99) / 1000,
    }
    for index, node_samples in enumerate(sampled_by_node[1:], start=2):
        # Events published on the first node that crossed the broker to this one.
        node_latencies = [total for total, _, _ in node_samples]
        extra[f"node{index}_p50_ms"] = percentile(node_latencies, 0.50) / 1000
        extra[f"node{index}_p99_ms"] = percentile(node_latencies, 0.99) / 1000
    if round_trips:
        extra["rtt_p50_ms"] = percentile(round_trips, 0.5) / 1000
        extra["rtt_p99_ms"] = percentile(round_trips, 0.99) / 1000
        extra["late_p99_ms"] = percentile(late, 0.99) / 1000
    ours = (
        (last.server - first.server)
        + (last.generators - first.generators)
        + (last.publisher - first.publisher)
    )
    return Result(
        name=deployment.name,
        deliveries_per_s=events / wall,
        per_cpu_s=events / max(last.server - first.server, 1e-9),
        p50_ms=percentile(latencies, 0.50) / 1000,
        p99_ms=percentile(latencies, 0.99) / 1000,
        max_ms=max(latencies) / 1000,
        rss_per_connection_kib=(rss_joined - rss_before) / args.subscribers / 1024,
        server_cpu=(last.server - first.server) / wall,
        server_kernel=(last.server_kernel - first.server_kernel) / wall,
        generator_cpu=(last.generators - first.generators) / wall,
        generator_kernel=(last.generators_kernel - first.generators_kernel) / wall,
        publisher_cpu=(last.publisher - first.publisher) / wall,
        other_cpu=max(0.0, (last.machine - first.machine) - ours) / wall,
        interrupt_cpu=(last.interrupts - first.interrupts) / wall,
        publishes_per_s=events / subscribers / wall,
        frame_bytes=(last.event_bytes - first.event_bytes) / max(events, 1),
        delivered=delivered,
        expected=expected,
        expected_at_most=expected_at_most,
        failed=failed,
        samples=len(latencies),
        extra=extra,
    )


def profile(server: Server, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """Profile the server for the measured window.

    py-spy: Python stacks (raw, one line per stack, for flame graphs). perf:
    where the CPU goes below Python too (kernel, uvloop, libpython), for
    ``perf report``.
    """
    args.profile.mkdir(parents=True, exist_ok=True)
    pid, seconds = str(server.process.pid), f"{args.seconds:.0f}"
    if args.profiler == "perf":
        output = args.profile / f"{server.name}-{pid}.perf.data"
        command = ["perf", "record", "-F", "499", "-g", "-p", pid, "-o", str(output)]
        command += ["--", "sleep", seconds]
    else:
        output = args.profile / f"{server.name}-{pid}.txt"
        command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", pid]
        command += ["--duration", seconds, "--format", "raw", "--output", str(output)]
        # Native frames (uvloop, grpc, the interpreter) need the process paused.
        command += ["--native"] if args.profiler == "py-spy-native" else ["--nonblocking"]
    print(f"  profiling {server.name} into {output}")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def per_delivery(result: Result, cores: float) -> str:
    return f"{cores / result.deliveries_per_s * 1e6:.2f} us"


def show(result: Result) -> None:
    lost = result.expected - result.delivered
    extra_frames = result.delivered - result.expected_at_most
    print(
        f"  {result.name:<9} {result.deliveries_per_s:>9,.0f} deliveries/s"
        f" ({result.publishes_per_s:.1f} publishes/s x {result.frame_bytes:.0f} B frames);"
        f" {result.per_cpu_s:>9,.0f} per server CPU-s"
        f" (server CPU {result.server_cpu:.0%}: {per_delivery(result, result.server_cpu)}"
        f" per delivery, {per_delivery(result, result.server_kernel)} of it in the kernel);"
        f" latency p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
        f" max {result.max_ms:.1f} ms ({result.samples:,} samples);"
        f" RSS {result.rss_per_connection_kib:.1f} KiB/connection"
    )
    print(
        f"  {'':<9} load generator CPU {result.generator_cpu:.0%}"
        f" ({per_delivery(result, result.generator_cpu)} per delivery,"
        f" {per_delivery(result, result.generator_kernel)} in the kernel),"
        f" publisher CPU {result.publisher_cpu:.0%}, other processes {result.other_cpu:.0%},"
        f" interrupts {result.interrupt_cpu:.0%};"
        f" delivered {result.delivered:,} of {result.expected:,}"
        + (f" (MISSING {lost:,})" if lost > 0 else "")
        + (f" (EXTRA {extra_frames:,})" if extra_frames > 0 else "")
        + (f" ({result.failed} publishes failed)" if result.failed else "")
        + f"; {result.extra['connect_s']:.1f} s to connect and join"
    )
    extra = result.extra
    print(
        f"  {'':<9} publish -> accepted (server clock, +-1 ms) p50 {extra['accept_p50_ms']:.1f} ms,"
        f" p99 {extra['accept_p99_ms']:.1f} ms"
        + (
            f"; Publish round trip p50 {extra['rtt_p50_ms']:.1f} ms,"
            f" p99 {extra['rtt_p99_ms']:.1f} ms; publisher late p99 {extra['late_p99_ms']:.1f} ms"
            if "rtt_p50_ms" in extra
            else ""
        )
    )
    for key in sorted(k for k in extra if k.startswith("node") and k.endswith("_p99_ms")):
        node = key.removesuffix("_p99_ms")
        print(
            f"  {'':<9} across the broker ({node}: published on node 1)"
            f" latency p50 {extra[f'{node}_p50_ms']:.2f} ms, p99 {extra[key]:.2f} ms"
        )


def wait_quiet(limit: float, patience: float = 600) -> None:
    """Wait (up to ``patience`` s) until other processes use at most ``limit`` cores."""
    deadline = time.monotonic() + patience
    while True:
        before = machine_busy()[0]
        time.sleep(2)
        busy = (machine_busy()[0] - before) / 2
        if busy <= limit or time.monotonic() > deadline:
            return
        print(f"  (machine busy: {busy:.2f} cores in use; waiting)", flush=True)
        time.sleep(8)


def median_of(results: list[Result], attribute: str) -> float:
    return float(statistics.median(getattr(r, attribute) for r in results))


def fanout(args: argparse.Namespace) -> None:
    print(
        f"fan-out: {args.subscribers:,} WebSocket subscribers in {args.room},"
        f" {args.rate:g} publishes/s, {args.seconds:g} s measured after {args.warmup:g} s,"
        f" {args.rounds} round(s); {os.cpu_count()} cores,"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    names = args.servers
    runs: dict[str, list[Result]] = {name: [] for name in names}
    for round_ in range(1, args.rounds + 1):
        for attempt in range(1, args.retries + 2):
            wait_quiet(args.quiet)
            print(f"round {round_} (load average {os.getloadavg()[0]:.2f}):")
            results: dict[str, Result] = {}
            for name in names if round_ % 2 else names[::-1]:
                deployment = DEPLOYMENTS[name](args)
                try:
                    results[name] = run_fanout(deployment, args)
                finally:
                    deployment.stop()
                show(results[name])
            disturbed = max(r.other_cpu for r in results.values())
            if disturbed <= args.quiet or attempt > args.retries:
                break
            print(
                f"  other processes took {disturbed:.2f} cores (over --quiet {args.quiet:g});"
                " repeating the round"
            )
        for name, result in results.items():
            runs[name].append(result)
        if len(names) > 1:
            ratio = results[names[0]].per_cpu_s / results[names[1]].per_cpu_s
            print(f"  ratio (deliveries per server CPU-s, {names[0]} / {names[1]}): {ratio:.3f}")
    print(f"median of {args.rounds} round(s):")
    for name in names:
        of_name = runs[name]
        per_cpu_s = median_of(of_name, "per_cpu_s")
        print(
            f"  {name:<9} {median_of(of_name, 'deliveries_per_s'):>9,.0f} deliveries/s;"
            f" {per_cpu_s:>9,.0f} per server CPU-s ({1e6 / per_cpu_s:.2f} us per delivery);"
            f" latency p50 {median_of(of_name, 'p50_ms'):.2f} ms,"
            f" p99 {median_of(of_name, 'p99_ms'):.2f} ms;"
            f" RSS {median_of(of_name, 'rss_per_connection_kib'):.1f} KiB/connection;"
            f" load generator CPU {median_of(of_name, 'generator_cpu'):.0%}"
        )
    judge(runs)


def judge(runs: dict[str, list[Result]]) -> None:
    """The targets the figures of these runs bear on, met or missed."""

    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    def ratio(first: str, second: str) -> float:
        pairs = zip(runs[first], runs[second], strict=True)
        return float(statistics.median(a.per_cpu_s / b.per_cpu_s for a, b in pairs))

    if "roomcast" in runs and "reference" in runs:
        value, p99 = ratio("roomcast", "reference"), median_of(runs["roomcast"], "p99_ms")
        print(
            f"  roomcast / reference {value:.2f} (target >= 1.5: {verdict(value >= 1.5)});"
            f" roomcast p99 {p99:.2f} ms (target <= 10 ms: {verdict(p99 <= 10)})"
        )
    if "roomcast" in runs and "no-metrics" in runs:
        # Per server CPU-second: at a fixed publish rate the deliveries per
        # second are the same, and what metrics cost shows as CPU.
        cost = 1 - ratio("roomcast", "no-metrics")
        print(
            f"  metrics cost {cost:.1%} of fan-out throughput (target < 2%: {verdict(cost < 0.02)})"
        )
    if "redis" in runs:
        p99 = float(statistics.median(r.extra["node2_p99_ms"] for r in runs["redis"]))
        print(f"  cross-node p99 {p99:.2f} ms (target <= 15 ms: {verdict(p99 <= 15)})")


# -- memory --------------------------------------------------------------------


def memory_once(name: str, args: argparse.Namespace, processes: int) -> float:
    """Open idle connections to a fresh server; its RSS growth per connection (KiB)."""
    count: int = args.connections
    deployment = DEPLOYMENTS[name](args)
    server = deployment.entry
    try:
        time.sleep(1.0)
        before = server.psutil.memory_info().rss
        generators, took = open_connections(server, count, None, args.sample_every, processes)
        try:
            time.sleep(2.0)
            after = server.psutil.memory_info().rss
            still_open = totals(generators).open
        finally:
            for generator in generators:
                generator.close()
    finally:
        deployment.stop()
    per_connection = float(after - before) / count / 1024
    print(
        f"  {name:<9} RSS {before / MIB:.1f} MiB -> {after / MIB:.1f} MiB:"
        f" {per_connection:.1f} KiB per connection"
        f" ({still_open:,} open; {took:.1f} s to connect)"
    )
    return per_connection


def memory(args: argparse.Namespace) -> None:
    count = args.connections
    processes = max(args.client_processes, math.ceil(count / PER_PROCESS))
    print(
        f"memory: {count:,} idle authenticated WebSocket connections"
        f" from {processes} load-generator processes, {args.rounds} round(s);"
        f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    names = [name for name in args.servers if name in ("roomcast", "reference")]
    found: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}:")
        for name in names:
            found[name].append(memory_once(name, args, processes))
    print(f"median of {args.rounds} round(s):")
    for name in names:
        print(f"  {name:<9} {statistics.median(found[name]):.1f} KiB per connection")
    if "roomcast" in found:
        kib = statistics.median(found["roomcast"])
        print(f"  roomcast {kib:.1f} KiB (target <= 20 KiB: {'met' if kib <= 20 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mode", choices=["fanout", "memory"], default="fanout")
    parser.add_argument(
        "--servers",
        type=lambda text: text.split(","),
        default=["roomcast", "reference"],
        help=f"comma-separated, of {', '.join(DEPLOYMENTS)}; ratios are of the first two",
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="publishes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per server")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--room", default="global.bench")
    parser.add_argument("--text", default="hello", help="the payload's text field")
    parser.add_argument("--sample-every", type=int, default=50, help="decode 1 event in N")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--connections", type=int, default=10_000, help="memory mode")
    parser.add_argument("--reference-loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.5,
        help="cores other processes may use; busier rounds are repeated (shared machines)",
    )
    parser.add_argument("--retries", type=int, default=3, help="repeats of a disturbed round")
    parser.add_argument("--profile", type=Path, help="py-spy the servers; raw stacks into DIR")
    parser.add_argument("--dump-samples", type=Path, help="append latency samples to FILE")
    parser.add_argument("--profiler", choices=["py-spy", "py-spy-native", "perf"], default="py-spy")
    args = parser.parse_args()
    if unknown := set(args.servers) - set(DEPLOYMENTS):
        parser.error(f"--servers: unknown {', '.join(sorted(unknown))}")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.mode == "fanout":
        fanout(args)
    else:
        memory(args)


if __name__ == "__main__":
    main()
