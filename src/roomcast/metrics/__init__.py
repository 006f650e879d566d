"""The node watching itself: counters, latency histogram, snapshots."""

from .collector import Collector, Counters, Snapshot, SystemSample
from .histogram import LatencyHistogram

__all__ = ["Collector", "Counters", "LatencyHistogram", "Snapshot", "SystemSample"]
