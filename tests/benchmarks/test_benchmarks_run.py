"""The benchmarks still run: each one, end to end, on a tiny load.

Not a performance test (no figure is judged): it proves that the programs
docs/benchmarks.md tells people to run start their servers, drive them and
print a report in which every event was delivered.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run(script: str, *args: str, timeout: float = 100) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=BENCHMARKS.parent,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


# Tiny, and never waiting for a quiet machine (--quiet: any load will do).
TINY = ("--subscribers", "20", "--rate", "20", "--seconds", "1", "--warmup", "0.5")
ANY_LOAD = ("--rounds", "1", "--quiet", "64", "--retries", "0", "--sample-every", "1")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("servers", ["roomcast,reference", "redis,no-metrics"])
def test_fanout_delivers_every_event(servers: str) -> None:
    report = run("fanout.py", "--servers", servers, *TINY, *ANY_LOAD, timeout=140)
    delivered = re.findall(r"delivered ([\d,]+) of ([\d,]+)", report)
    assert len(delivered) == 2, report
    for got, expected in delivered:
        assert got == expected != "0", report
    assert "MISSING" not in report
    assert "median of 1 round(s):" in report
    if "redis" in servers:
        assert "across the broker (node2" in report


def test_fanout_memory_mode_reports_per_connection() -> None:
    report = run(
        "fanout.py", "--mode", "memory", "--connections", "50", "--rounds", "1",
        "--servers", "roomcast",
    )  # fmt: skip
    assert re.search(r"roomcast +[\d.]+ KiB per connection", report), report


def test_grpc_ingress_stores_and_delivers_every_event() -> None:
    report = run(
        "grpc_ingress.py", "--load", "grpcio", "--seconds", "1", "--clients", "1",
        "--batch", "50", "--broker", "redis",
    )  # fmt: skip
    received = re.search(r"subscriber received ([\d,]+) of ([\d,]+) events", report)
    assert received is not None, report
    assert received[1] == received[2] != "0", report
    assert "offset gaps: 0" in report


def test_metrics_cost_reports_a_share() -> None:
    report = run("metrics_cost.py", "--connections", "100", "--turns", "1000", "--ticks", "3")
    assert re.search(r"total [\d.]+% of fan-out throughput", report), report


def test_write_floor_reports_a_floor() -> None:
    report = run("write_floor.py", "--connections", "20", "--rate", "20", "--seconds", "1")
    assert re.search(r"[\d.]+ us of CPU per write", report), report


def test_soak_delivers_every_acknowledged_event() -> None:
    # A short drain timeout ends the stalls within the run; more 60 KB events
    # give the stalled clients enough to leave unread; a metrics sample a
    # second tells open connections soon after the clients left.
    report = run(
        "soak.py", "--seconds", "15", "--clients", "20", "--big-fraction", "0.2",
        "--set", "ws_drain_timeout=1", "--set", "metrics_interval=1",
    )  # fmt: skip
    assert "ledger: PASS" in report, report
    assert "verdict: PASS" in report, report
    for members in ("well-behaved clients", "Subscribe streams"):
        delivery = re.search(
            rf"delivery to {members} \(\d+\): owed ([\d,]+), delivered ([\d,]+)", report
        )
        assert delivery is not None, report
        assert delivery[1] == delivery[2] != "0", report
    assert re.search(r"server RSS: baseline [\d.]+ MiB, peak [\d.]+ MiB", report), report
    assert re.search(r"stalled +as documented +[1-9]", report), report
    for table in ("frames sent, by type", "error frames received, by code"):
        assert table in report, report


def test_amplification_reports_the_peak_rss_of_each_build() -> None:
    report = run("amplification.py", "--seconds", "2", "--attackers", "2")
    row = re.search(r"^this +2 +(\d+) MiB +(\d+) MiB +(\d+) MiB +\d+ ms", report, re.M)
    assert row is not None, report
    assert int(row[2]) >= int(row[1]), report
