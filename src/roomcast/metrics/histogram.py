"""A fixed-bucket latency histogram: O(1) memory, cheap to record, mergeable.

Buckets grow geometrically (about 10 % apart) from 10 µs to 60 s, so a
percentile read from it is within ~10 % of the true value, however many
observations it holds.
"""

from __future__ import annotations

import math
from bisect import bisect_left

__all__ = ["LatencyHistogram"]

_LOWEST = 1e-5  # seconds
_HIGHEST = 60.0
_GROWTH = 1.1
# Upper bounds of the buckets, in seconds; one more bucket catches the rest.
BOUNDS: tuple[float, ...] = tuple(
    _LOWEST * _GROWTH**i for i in range(int(math.log(_HIGHEST / _LOWEST, _GROWTH)) + 2)
)


class LatencyHistogram:
    """Counts of observations per bucket."""

    __slots__ = ("count", "counts", "largest", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.count = 0
        self.total = 0.0
        self.largest = 0.0  # reported for ranks in the open-ended last bucket

    def observe(self, seconds: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.count += 1
        self.total += seconds
        if seconds > self.largest:
            self.largest = seconds

    def observe_many(self, seconds: float, times: int) -> None:
        """Record ``times`` observations of the same value."""
        self.counts[bisect_left(BOUNDS, seconds)] += times
        self.count += times
        self.total += seconds * times
        if seconds > self.largest:
            self.largest = seconds

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s observations to this one."""
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.count += other.count
        self.total += other.total
        self.largest = max(self.largest, other.largest)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) in seconds; 0.0 when empty.

        Reports the upper bound of the bucket holding the rank, so it never
        understates a latency.
        """
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return BOUNDS[index] if index < len(BOUNDS) else self.largest
        return self.largest
