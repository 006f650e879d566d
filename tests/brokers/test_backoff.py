"""Reconnection delays (src/roomcast/brokers/backoff.py)."""

from __future__ import annotations

import random

from roomcast.brokers.backoff import Backoff


def test_delays_double_up_to_the_maximum_with_jitter() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, _random=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.attempts == 8


def test_jitter_spreads_nodes_apart() -> None:
    # Twenty nodes, each with a random source of its own (seeded: the same
    # delays every run), reconnect after one Redis restart.
    delays = [
        Backoff(initial=1.0, maximum=1.0, _random=random.Random(node)).next() for node in range(20)
    ]
    assert len(set(delays)) == 20
    assert all(0.5 <= delay <= 1.0 for delay in delays)
    assert max(delays) - min(delays) > 0.25  # spread over the jitter's half, not bunched


def test_reset_starts_over() -> None:
    backoff = Backoff(initial=0.1, maximum=10.0)
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 0.1
