"""The latency histogram (src/roomcast/metrics/histogram.py)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.metrics.histogram import BOUNDS, LatencyHistogram

LOWEST = 1e-5
HIGHEST = 60.0
# The buckets are 10 % apart; allow for the rounding of their bounds.
SLACK = 1.1 * (1 + 1e-9)

latencies = st.floats(min_value=LOWEST, max_value=HIGHEST, allow_nan=False)
quantiles = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def exact_percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q % at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q / 100.0))
    return ordered[rank - 1]


def histogram_of(values: list[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.observe(value)
    return histogram


@settings(deadline=None, max_examples=150)
@given(st.lists(latencies, min_size=1, max_size=200), quantiles)
def test_percentiles_are_within_ten_percent_and_never_understate(
    values: list[float], q: float
) -> None:
    exact = exact_percentile(values, q)
    reported = histogram_of(values).percentile(q)
    assert exact <= reported <= exact * SLACK


@settings(deadline=None)
@given(st.lists(latencies, min_size=1, max_size=50), st.lists(latencies, min_size=1, max_size=50))
def test_merge_equals_observing_everything(first: list[float], second: list[float]) -> None:
    merged = histogram_of(first)
    merged.merge(histogram_of(second))
    together = histogram_of(first + second)
    assert merged.counts == together.counts
    assert merged.count == len(first) + len(second)
    assert merged.total == pytest.approx(sum(first) + sum(second))
    for q in (0.0, 50.0, 90.0, 99.0, 100.0):
        assert merged.percentile(q) == together.percentile(q)


def test_merge_leaves_the_other_histogram_alone() -> None:
    target, other = histogram_of([0.001]), histogram_of([0.5, 0.5])
    target.merge(other)
    assert (other.count, other.total) == (2, 1.0)
    assert target.count == 3


def test_an_empty_histogram_reports_zero() -> None:
    histogram = LatencyHistogram()
    assert histogram.count == 0
    assert histogram.total == 0.0
    for q in (0.0, 50.0, 100.0):
        assert histogram.percentile(q) == 0.0


def test_merging_empty_histograms_stays_empty() -> None:
    histogram = LatencyHistogram()
    histogram.merge(LatencyHistogram())
    assert histogram.percentile(99.0) == 0.0


def test_observe_many_equals_observing_one_at_a_time() -> None:
    many = LatencyHistogram()
    many.observe_many(0.002, 5)
    many.observe_many(0.2, 3)
    single = histogram_of([0.002] * 5 + [0.2] * 3)
    assert many.counts == single.counts
    assert many.count == 8
    assert many.total == pytest.approx(single.total)
    assert many.percentile(50.0) == single.percentile(50.0)


def test_percentiles_pick_the_right_rank() -> None:
    histogram = histogram_of([0.001] * 90 + [0.1] * 10)
    assert 0.001 <= histogram.percentile(90.0) <= 0.0011
    assert 0.1 <= histogram.percentile(91.0) <= 0.11
    assert 0.001 <= histogram.percentile(0.0) <= 0.0011
    assert 0.1 <= histogram.percentile(100.0) <= 0.11


def test_a_value_on_a_bound_reports_that_bound() -> None:
    bound = BOUNDS[40]
    assert histogram_of([bound]).percentile(50.0) == bound


def test_bounds_span_the_range_ten_percent_apart() -> None:
    assert BOUNDS[0] == LOWEST
    assert BOUNDS[-1] >= HIGHEST
    ratios = {round(b / a, 9) for a, b in itertools.pairwise(BOUNDS)}
    assert ratios == {1.1}


def test_values_below_the_lowest_bound_report_the_lowest_bound() -> None:
    assert histogram_of([1e-7, 0.0]).percentile(100.0) == LOWEST


def test_values_beyond_the_range_report_the_largest_seen() -> None:
    assert histogram_of([100.0]).percentile(100.0) == 100.0
    assert histogram_of([61.0]).percentile(100.0) == BOUNDS[-1]
    # Monotonic across the last bound: a slower latency never reads as faster.
    assert histogram_of([100.0]).percentile(100.0) >= histogram_of([61.0]).percentile(100.0)
    mixed = histogram_of([0.001, 70.0, 250.0])
    assert mixed.percentile(100.0) == 250.0
    assert mixed.percentile(50.0) == 250.0  # the rank falls in the open-ended bucket


def test_observe_many_and_merge_keep_the_largest() -> None:
    many = LatencyHistogram()
    many.observe_many(500.0, 3)
    assert many.percentile(50.0) == 500.0
    other = histogram_of([80.0])
    other.merge(many)
    assert other.percentile(100.0) == 500.0
    many.merge(histogram_of([80.0]))
    assert many.percentile(100.0) == 500.0


@settings(deadline=None)
@given(st.lists(st.floats(min_value=LOWEST, max_value=1e4), min_size=1, max_size=100), quantiles)
def test_percentiles_never_understate_beyond_the_range(values: list[float], q: float) -> None:
    exact = exact_percentile(values, q)
    reported = histogram_of(values).percentile(q)
    assert exact <= reported <= max(exact * SLACK, max(values))
