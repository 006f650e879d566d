"""Soak benchmark: every frame type, stalled and abusive clients, for minutes.

Starts one real ``roomcast serve`` (memory broker, or ``--broker redis``
with a redis-server of its own), then for ``--seconds``:

- well-behaved WebSocket clients (``soak_clients.py``) authenticate, join
  chats, documents, global rooms, send messages, typing and cursor updates,
  ask for presence and paged history, leave and rejoin, refresh tokens,
  ping, and drop their connections to resume every room with ``since``;
  they read everything, check it against docs/protocol.md, and record every
  stored event they get;
- stalling clients (``soak_abuse.py``) stop reading and keep asking for the
  largest replies: the server must close them with 4100 and not grow;
- abusive clients send malformed, unknown, too deep, non-finite, oversized
  and flooding frames, other tenants' rooms, impossible positions and page
  tokens, bad tokens, too many connections — each answer is compared with
  docs/protocol.md;
- a backend (``soak_grpc.py``) publishes over gRPC (Publish and
  PublishBatch, payloads up to about 60 KB) into every kind of room, and
  two Subscribe streams (``**`` and a tenant's patterns) follow along.

Reported: frames sent and received by type, error frames by code, close
codes, the server's RSS (sampled every 0.25 s) and CPU, events
acknowledged, and — the key figure (``soak_ledger.py``) — whether every
acknowledged stored event reached every well-behaved client in its room and
every stream, once. It exits with 1 if that ledger fails (an acknowledged
event lost, an event delivered twice, two events at one position), if an
answer or frame contradicts docs/protocol.md (an anomaly: a corrupted
payload, a wrong error code or close code, a stall not closed), if the
server still counts connections after every client left, or if it died or
logged a traceback.

    .venv/bin/python benchmarks/soak.py [--seconds 180] [--clients 200] [--broker redis]

A run of a few seconds (the smoke test in tests/benchmarks) needs a short
drain timeout for its stalls to end: ``--set ws_drain_timeout=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import psutil
import soak_clients
import soak_grpc
from fanout import cpu
from fanout_processes import SPAWN, Server, start_redis, start_roomcast
from soak_ledger import Figures, check
from soak_link import Tally
from soak_plan import tenants

from roomcast.auth import mint_token
from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

__all__ = ["main"]

MIB = 1024 * 1024
POPULATIONS = ("well-behaved", "stalling", "abusive")
STALL_MARGIN = 8.0  # seconds a stall may take beyond ws_drain_timeout to be closed


# -- the server's resources ------------------------------------------------------------


class Sampler(threading.Thread):
    """Samples a process's RSS every ``every`` seconds."""

    def __init__(self, process: psutil.Process, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.process, self.every = process, every
        self.samples: list[tuple[float, int]] = []  # (time.monotonic(), RSS)
        self.died = False
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), self.process.memory_info().rss))
            except psutil.Error:
                self.died = True
                return
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def between(self, start: float, end: float) -> list[tuple[float, int]]:
        return [(t, rss) for t, rss in self.samples if start <= t <= end]


@dataclass
class Log:
    """What the server's log says."""

    lines: int = 0
    errors: list[str] = field(default_factory=list)  # ERROR lines
    tracebacks: int = 0
    closes: Counter[str] = field(default_factory=Counter)  # "closing connection ... with N"

    @classmethod
    def read(cls, text: str) -> Log:
        found = cls(lines=text.count("\n"))
        for line in text.splitlines():
            if " ERROR " in line:
                found.errors.append(line[:400])
            if "Traceback (most recent call last)" in line or "innermost frames:" in line:
                found.tracebacks += 1
            if match := re.search(r"closing connection \S+ with (\d+)", line):
                found.closes[match[1]] += 1
        return found


def server_counters(server: Server, after: float) -> dict[str, int]:
    """The server's own figures (GetMetrics) from a sample taken after ``after`` (``time.time()``).

    The server samples its metrics every ``metrics_interval`` (5 s): wait for one.
    """
    token = mint_token(server.secret, subject="soak-report", roles=["service"], ttl=600)
    metadata = (("authorization", f"Bearer {token}"),)
    try:
        with grpc.insecure_channel(server.grpc) as channel:
            stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
            for _ in range(60):
                reply = stub.GetMetrics(
                    realtime_pb2.GetMetricsRequest(), metadata=metadata, timeout=10
                )
                if reply.time.ToNanoseconds() / 1e9 > after:
                    break
                time.sleep(0.25)
    except grpc.RpcError as error:
        return {"unavailable": 1, "code": error.code().value[0]}
    return {
        "open connections": reply.connections,
        "open Subscribe streams": reply.subscriptions,
        "slow consumer closes": reply.slow_consumer_closes,
        "abuse closes": reply.abuse_closes,
        "rate limited": reply.rate_limited,
        "auth failures": reply.auth_failures,
    }


# -- the run ----------------------------------------------------------------------------


def population_plan(args: argparse.Namespace) -> list[tuple[int, str, str, str]]:
    """(index, population, tenant, user) for every WebSocket client."""
    names = tenants(args.tenants)
    stalling = round(args.clients * args.stalling)
    abusive = round(args.clients * args.abusive)
    well = args.clients - stalling - abusive
    plan = []
    for i in range(well):  # two connections per user
        plan.append((i, "well-behaved", names[(i // 2) % len(names)], f"w{i // 2}"))
    for i in range(well, well + stalling):
        plan.append((i, "stalling", names[i % len(names)], f"s{i}"))
    for i in range(well + stalling, args.clients):
        plan.append((i, "abusive", names[i % len(names)], f"a{i}"))
    return plan


def receive(control: Connection, timeout: float, what: str) -> Any:
    if not control.poll(timeout):
        raise RuntimeError(f"{what} did not answer within {timeout:g} s")
    return control.recv()


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; everything the report shows."""
    settings = dict(args.set)
    redis = None
    if args.broker == "redis":
        redis = start_redis()
        settings["broker"] = f"redis://127.0.0.1:{redis.port}/0"
    server = start_roomcast(settings)
    sampler = Sampler(server.psutil)
    sampler.start()
    processes: list[Any] = []
    try:
        return drive(args, server, sampler, processes)
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
        sampler.stop()
        server.stop()
        if redis is not None:
            redis.stop()


def drive(
    args: argparse.Namespace, server: Server, sampler: Sampler, processes: list[Any]
) -> dict[str, Any]:
    plan = population_plan(args)
    names = tenants(args.tenants)
    users = {
        t: sorted({u for _, p, tt, u in plan if p == "well-behaved" and tt == t}) for t in names
    }
    settings = dict(args.set)
    config: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "grpc": server.grpc,
        "secret": server.secret,
        "seed": args.seed,
        "tenants": names,
        "users": {t: u or [f"w-{t}"] for t, u in users.items()},
        "think": args.think,
        "ramp": min(5.0, args.seconds / 5),
        "server_log": f"/proc/{server.process.pid}/fd/2",
        "stall_limit": args.stall_limit,
        "per_user": int(settings.get("max_connections_per_user", 10)),
        "publish_rate": args.publish_rate,
        "batch_fraction": args.batch_fraction,
        "big_fraction": args.big_fraction,
    }
    time.sleep(1.0)  # the baseline: the server up, nobody connected
    baseline = max(rss for _, rss in sampler.samples)
    cpu_before = cpu(server.psutil)

    def start(target: Any, extra: dict[str, Any]) -> Connection:
        ours, theirs = SPAWN.Pipe()
        process = SPAWN.Process(target=target, args=({**config, **extra}, theirs), daemon=True)
        process.start()
        processes.append(process)
        return ours

    streams = start(soak_grpc.subscriber, {})
    ready = receive(streams, 60, "the Subscribe streams")
    if ready != ("ready",):
        raise RuntimeError(f"Subscribe streams: {ready}")
    client_controls = [
        start(soak_clients.run, {"clients": plan[k :: args.client_processes]})
        for k in range(args.client_processes)
    ]
    backend = start(soak_grpc.backend, {})
    for control in [*client_controls, backend]:
        receive(control, 60, "a client process")
    started = time.monotonic() + 0.5
    stop = started + args.seconds
    for control in [*client_controls, backend]:
        control.send(("go", started, stop))
    progress(args, server, sampler, started, stop)
    cpu_load = cpu(server.psutil)
    published = receive(backend, 120, "the backend")
    for control in client_controls:
        receive(control, 120, "a client process (stopping)")
    stopped = time.monotonic()
    time.sleep(args.grace + 1.0)  # the last events reach everyone
    for control in client_controls:
        control.send(("finish",))
    results = [receive(c, 120, "a client process (finishing)") for c in client_controls]
    streams.send(("finish",))
    stream_results = receive(streams, 60, "the Subscribe streams (finishing)")
    ended = time.monotonic()
    counters = server_counters(server, after=time.time() + 0.5)  # every connection gone
    final = sampler.samples[-1][1] if sampler.samples else 0
    cpu_after = cpu(server.psutil)
    alive = server.process.poll() is None and not sampler.died
    server.process.terminate()
    server.process.wait(30)
    server.log.seek(0)
    log = Log.read(server.log.read())
    return report_data(
        args, plan, published, results, stream_results, log, counters,
        baseline=baseline, final=final, alive=alive, sampler=sampler,
        times=(started, stop, stopped, ended),
        cpu_seconds=(cpu_load - cpu_before, cpu_after - cpu_before),
    )  # fmt: skip


def progress(
    args: argparse.Namespace, server: Server, sampler: Sampler, started: float, stop: float
) -> None:
    """Print the server's RSS and CPU now and then while the load runs."""
    every = max(10.0, args.seconds / 6)
    last_cpu, last = cpu(server.psutil), time.monotonic()
    next_line = started + every
    while (now := time.monotonic()) < stop:
        time.sleep(min(1.0, stop - now))
        if time.monotonic() >= next_line and time.monotonic() < stop - 1:
            with contextlib.suppress(psutil.Error):
                used, now = cpu(server.psutil), time.monotonic()
                rss = sampler.samples[-1][1]
                print(
                    f"  {now - started:5.0f} s: server RSS {rss / MIB:.1f} MiB,"
                    f" CPU {(used - last_cpu) / (now - last):.0%}"
                )
                last_cpu, last = used, now
            next_line += every


# -- the report ----------------------------------------------------------------------------


def report_data(
    args: argparse.Namespace,
    plan: list[tuple[int, str, str, str]],
    published: dict[str, Any],
    results: list[dict[str, Any]],
    stream_results: list[dict[str, Any]],
    log: Log,
    counters: dict[str, int],
    *,
    baseline: int,
    final: int,
    alive: bool,
    sampler: Sampler,
    times: tuple[float, float, float, float],
    cpu_seconds: tuple[float, float],
) -> dict[str, Any]:
    started, stop, stopped, ended = times
    tallies: dict[str, Tally] = {p: Tally() for p in (*POPULATIONS, "gRPC")}
    outcomes: dict[str, Counter[str]] = {}
    acks = list(published["acks"])
    members = [s["member"] for s in stream_results]
    ids: dict[Any, str] = {}
    id_conflicts = 0
    for result in results:
        for population, tally in result["tallies"].items():
            tallies[population].add(tally)
        for name, counts in result["outcomes"].items():
            outcomes.setdefault(name, Counter()).update(counts)
        acks += result["acks"]
        members += result["members"]
        for position, id_ in result["ids"].items():
            id_conflicts += ids.setdefault(position, id_) != id_
    for tally in [published["tally"], *(s["tally"] for s in stream_results)]:
        tallies["gRPC"].add(tally)
    figures, conflicts = check(acks, members, args.grace, started)
    for ack in acks:  # the acknowledged id against the delivered one
        id_conflicts += bool(ack.id) and ids.get((ack.key, ack.offset), ack.id) != ack.id
    load = sampler.between(started, stop)
    peak_time, peak = max(load or [(started, 0)], key=lambda s: s[1])
    quarters = [
        max((rss for t, rss in load if t <= started + args.seconds * q / 4), default=0)
        for q in (1, 2, 3, 4)
    ]
    ws, streams = figures.get("ws", Figures()), figures.get("grpc", Figures())
    ledger = []  # the key figure: every acknowledged event reached every live member, once
    for name, found in (("well-behaved clients", ws), ("Subscribe streams", streams)):
        if not found.owed:
            ledger.append(f"no acknowledged event was owed to the {name}: nothing checked")
        if found.missing:
            ledger.append(f"{found.missing} acknowledged deliveries missing ({name})")
        if found.duplicates:
            ledger.append(f"{found.duplicates} duplicate deliveries ({name})")
        if found.unacknowledged_lost:
            ledger.append(f"{found.unacknowledged_lost} unacknowledged stored events lost ({name})")
    if conflicts or id_conflicts:
        ledger.append(f"{len(conflicts) + id_conflicts} positions with two different events")
    failures = list(ledger)
    for population, tally in tallies.items():
        if tally.anomalies:
            failures.append(f"{sum(tally.anomalies.values())} anomalies ({population})")
        if internal := tally.errors.get("internal", 0):
            failures.append(f"{internal} 'internal' error frames ({population}): server faults")
    stalled = outcomes.get("stalled", Counter())
    stallers = sum(1 for _, p, _, _ in plan if p == "stalling")
    if stallers and args.seconds > args.stall_limit + 5 and not stalled["as documented"]:
        failures.append(f"none of {stallers} stalling clients was closed with 4100")
    if leaks := {k: v for k, v in counters.items() if k.startswith("open ") and v}:
        failures.append(f"the server still counts {listing(leaks)} after every client left")
    if not alive:
        failures.append("the server died")
    if log.tracebacks:
        failures.append(f"the server logged {log.tracebacks} traceback(s)")
    return {
        "broker": args.broker,
        "seed": args.seed,
        "seconds": args.seconds,
        "duration": {"load": stop - started, "stopping": stopped - stop, "total": ended - started},
        "clients": dict(Counter(p for _, p, _, _ in plan)),
        "tenants": args.tenants,
        "streams": len(stream_results),
        "frames_sent": {p: dict(tallies[p].sent) for p in POPULATIONS},
        "frames_received": {p: dict(tallies[p].received) for p in POPULATIONS},
        "errors_received": {p: dict(tallies[p].errors) for p in POPULATIONS},
        "closes": {p: dict(tallies[p].closes) for p in POPULATIONS},
        "client_closes": {p: tallies[p].client_closes for p in POPULATIONS},
        "server_log_closes": dict(log.closes),
        "rss": {
            "baseline": baseline,
            "peak": peak,
            "peak_at": peak_time - started,
            "final": final,
            "quarters": quarters,
        },
        "server_cpu_seconds": {"load": cpu_seconds[0], "total": cpu_seconds[1]},
        "server_counters": counters,
        "acknowledged": {
            "events": len({(a.key, a.offset) for a in acks}),
            "by_source": dict(Counter(a.source for a in acks)),
            "grpc_calls": dict(published["calls"]),
            "idempotent_repeats": published["duplicates"],
            "kept_out_of_history": published["unstored"],
            "refused_on_purpose": dict(published["refused"]),
            "grpc_failures": dict(published["statuses"]),
        },
        "delivery": {"well_behaved": asdict(ws), "streams": asdict(streams)},
        "live_only_to_streams": {s["member"].name: s["unstored"] for s in stream_results},
        "conflicts": conflicts[:20],
        "id_conflicts": id_conflicts,
        "outcomes": {name: dict(c) for name, c in outcomes.items()},
        "anomalies": {p: dict(t.anomalies) for p, t in tallies.items()},
        "incidents": {p: dict(t.incidents) for p, t in tallies.items()},
        "examples": {p: t.examples for p, t in tallies.items()},
        "server_alive": alive,
        "server_log": {"lines": log.lines, "errors": log.errors[:20], "tracebacks": log.tracebacks},
        "ledger": ledger,
        "failures": failures,
    }


def table(title: str, rows: dict[str, dict[str, int]]) -> None:
    keys = sorted({k for row in rows.values() for k in row})
    print(f"{title:<34}" + "".join(f"{p:>14}" for p in rows))
    for key in keys:
        print(f"  {key:<32}" + "".join(f"{row.get(key, 0):>14,}" for row in rows.values()))


def listing(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


def show(data: dict[str, Any]) -> None:
    clients, duration = data["clients"], data["duration"]
    print(
        f"duration: {duration['load']:.1f} s of load,"
        f" then {duration['total'] - duration['load']:.1f} s to settle and close"
    )
    print(
        "clients: "
        + ", ".join(f"{clients.get(p, 0)} {p}" for p in POPULATIONS)
        + f" ({data['tenants']} tenants); gRPC: 1 backend, {data['streams']} Subscribe streams"
    )
    table("frames sent, by type", data["frames_sent"])
    table("frames received, by type", data["frames_received"])
    table("error frames received, by code", data["errors_received"])
    table("close codes the server chose", data["closes"])
    print(f"  closed by the client itself: {listing(data['client_closes'])}")
    print(f"  server log 'closing connection ... with': {listing(data['server_log_closes'])}")
    rss = data["rss"]
    print(
        f"server RSS: baseline {rss['baseline'] / MIB:.1f} MiB, peak {rss['peak'] / MIB:.1f} MiB"
        f" (at {rss['peak_at']:.0f} s), final {rss['final'] / MIB:.1f} MiB (all clients gone);"
        " highest by each quarter of the load: "
        + " / ".join(f"{q / MIB:.1f}" for q in rss["quarters"])
        + " MiB"
    )
    used = data["server_cpu_seconds"]
    print(
        f"server CPU: {used['load']:.1f} s during the load ({used['load'] / duration['load']:.0%}"
        f" of a core), {used['total']:.1f} s in all ({used['total'] / duration['total']:.0%})"
    )
    print(f"server counters (GetMetrics): {listing(data['server_counters'])}")
    acked = data["acknowledged"]
    print(
        f"events acknowledged: {acked['events']:,} stored ({listing(acked['by_source'])});"
        f" gRPC calls {listing(acked['grpc_calls'])};"
        f" idempotent repeats answered duplicate {acked['idempotent_repeats']:,};"
        f" {acked['kept_out_of_history']:,} kept out of history (not owed);"
        f" invalid items refused: {listing(acked['refused_on_purpose'])};"
        f" failed calls: {listing(acked['grpc_failures'])}"
    )
    for label, key in (("well-behaved clients", "well_behaved"), ("Subscribe streams", "streams")):
        found = data["delivery"][key]
        print(
            f"delivery to {label} ({found['members']}): owed {found['owed']:,},"
            f" delivered {found['delivered']:,} ({found['resumed']:,} of them through a resume),"
            f" lost {found['missing']:,}, duplicates {found['duplicates']:,}"
            f" (repeats the protocol allows on a rejoin: {found['overlaps']:,});"
            f" unacknowledged stored events lost {found['unacknowledged_lost']:,}"
        )
        for example in found["examples"][:10]:
            print(f"    {example}")
    print(f"  live-only events to the streams (not owed): {listing(data['live_only_to_streams'])}")
    print(f"positions with two different events: {len(data['conflicts']) + data['id_conflicts']}")
    print("abuse and stalls, as docs/protocol.md says they end:")
    for name, counts in sorted(data["outcomes"].items()):
        done = counts.get("as documented", 0)
        other = {k: v for k, v in counts.items() if k != "as documented"}
        print(f"  {name:<36} as documented {done:>5,}" + (f"; OTHERWISE {other}" if other else ""))
    for population, anomalies in data["anomalies"].items():
        incidents = data["incidents"][population]
        if anomalies or incidents:
            print(f"{population}: anomalies {anomalies or 'none'}; incidents {incidents or 'none'}")
            for example in data["examples"][population][:8]:
                print(f"    {example}")
    log = data["server_log"]
    print(
        f"server log: {log['lines']:,} lines, {len(log['errors'])} ERROR lines,"
        f" {log['tracebacks']} tracebacks; server {'alive' if data['server_alive'] else 'DIED'}"
    )
    for line in log["errors"][:5]:
        print(f"    {line}")
    ledger = data["ledger"]
    print(
        "ledger: "
        + ("FAIL: " + "; ".join(ledger) if ledger else "PASS")
        + " (every acknowledged event reached every live member, once)"
    )
    print("verdict: " + ("FAIL: " + "; ".join(data["failures"]) if data["failures"] else "PASS"))


def setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="of load")
    parser.add_argument("--clients", type=int, default=200, help="WebSocket clients in all")
    parser.add_argument("--broker", choices=["memory", "redis"], default="memory")
    parser.add_argument("--stalling", type=float, default=0.15, help="fraction of the clients")
    parser.add_argument("--abusive", type=float, default=0.15, help="fraction of the clients")
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between actions")
    parser.add_argument("--publish-rate", type=float, default=20.0, help="backend gRPC calls/s")
    parser.add_argument("--batch-fraction", type=float, default=0.15, help="of them PublishBatch")
    parser.add_argument("--big-fraction", type=float, default=0.04, help="events of ~60 KB")
    parser.add_argument("--client-processes", type=int, default=0, help="0: one per 100 clients")
    parser.add_argument(
        "--grace",
        type=float,
        help="seconds from an acknowledgement to delivery (default: 0 memory, 2 redis)",
    )
    parser.add_argument(
        "--set",
        type=setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a server setting (ROOMCAST_KEY), e.g. ws_drain_timeout=2",
    )
    parser.add_argument("--json", type=Path, help="write the figures to PATH")
    args = parser.parse_args()
    if args.grace is None:
        args.grace = 2.0 if args.broker == "redis" else 0.0
    # A stalled client is closed once a reply waited ws_drain_timeout for room.
    args.stall_limit = float(dict(args.set).get("ws_drain_timeout", 30)) + STALL_MARGIN
    if not args.client_processes:
        args.client_processes = max(1, -(-args.clients // 100))
    if args.tenants < 2:
        parser.error("--tenants: at least 2 (abusive clients try other tenants' rooms)")
    if not 0 <= args.stalling + args.abusive < 1:
        parser.error("--stalling and --abusive: fractions that leave well-behaved clients")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(
        f"soak: {args.clients} WebSocket clients, {args.broker} broker, {args.seconds:g} s,"
        f" backend {args.publish_rate:g} gRPC calls/s; seed {args.seed};"
        f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    data = soak(args)
    show(data)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str))
    sys.exit(1 if data["failures"] else 0)


if __name__ == "__main__":
    main()
