"""Rate limits and cursor coalescing (src/roomcast/bridge/limits.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomcast.bridge.limits import CursorThrottle, TokenBucket


def test_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=20, burst=50, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(60)) == 50
    assert sum(bucket.take(1.0) for _ in range(60)) == 20  # one second refills 20
    assert not bucket.take(1.0)


def test_bucket_never_saves_more_than_the_burst() -> None:
    bucket = TokenBucket(rate=20, burst=5, now=0.0)
    assert sum(bucket.take(1_000.0) for _ in range(10)) == 5


@given(st.lists(st.floats(min_value=0, max_value=0.5), max_size=200))
def test_bucket_never_exceeds_burst_plus_rate_times_time(gaps: list[float]) -> None:
    bucket = TokenBucket(rate=20, burst=50, now=0.0)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= 50 + 20 * now + 1e-9


def test_first_update_goes_at_once_the_next_waits_for_the_window() -> None:
    throttle: CursorThrottle[str, int] = CursorThrottle(0.05)
    assert throttle.offer("k", 1, 10.0) is None
    assert throttle.offer("k", 2, 10.01) == pytest.approx(10.05)
    assert throttle.offer("k", 3, 10.02) == -1.0  # already due: replaces 2
    assert throttle.due("k", 10.05) == 3
    assert throttle.due("k", 10.05) is None
    assert throttle.offer("k", 4, 10.06) == pytest.approx(10.1)  # 50 ms after the last send
    assert throttle.offer("other", 1, 10.06) is None  # keys are independent


def test_an_update_after_a_quiet_window_goes_at_once() -> None:
    throttle: CursorThrottle[str, int] = CursorThrottle(0.05)
    assert throttle.offer("k", 1, 0.0) is None
    assert throttle.offer("k", 2, 0.2) is None


@given(st.lists(st.floats(min_value=0, max_value=0.1), min_size=1, max_size=100))
def test_at_most_one_send_per_window_and_the_last_value_always_sent(gaps: list[float]) -> None:
    throttle: CursorThrottle[str, int] = CursorThrottle(0.05)
    now, sent, due_at = 0.0, [], None
    for value, gap in enumerate(gaps):
        now += gap
        if due_at is not None and now >= due_at:
            sent.append((due_at, throttle.due("k", due_at)))
            due_at = None
        when = throttle.offer("k", value, now)
        if when is None:
            sent.append((now, value))
        elif when > 0:
            due_at = when
    if due_at is not None:
        sent.append((due_at, throttle.due("k", due_at)))
    assert sent[-1][1] == len(gaps) - 1
    times = [t for t, _ in sent]
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(times))


def test_idle_keys_are_forgotten_past_the_bound() -> None:
    throttle: CursorThrottle[int, int] = CursorThrottle(0.05, max_keys=10)
    for key in range(10):
        throttle.offer(key, 0, 0.0)
    throttle.offer(99, 0, 1.0)
    assert len(throttle) == 1
