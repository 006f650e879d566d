"""The node watching itself: counters, histograms, snapshots, alerts, Prometheus."""

from .alerts import Alert, AlertRule, Alerts, Severity, Thresholds, default_rules
from .collector import Collector, Counters, Gauges, Idle, RoomSize, Snapshot, SystemSample
from .histogram import LatencyHistogram

__all__ = [
    "Alert",
    "AlertRule",
    "Alerts",
    "Collector",
    "Counters",
    "Gauges",
    "Idle",
    "LatencyHistogram",
    "RoomSize",
    "Severity",
    "Snapshot",
    "SystemSample",
    "Thresholds",
    "default_rules",
]
