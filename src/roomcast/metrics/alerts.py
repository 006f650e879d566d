"""Threshold alerts over metric snapshots: fire once, resolve once.

Pure: :meth:`Alerts.evaluate` takes a snapshot and the time and returns the
transitions (an alert fired, an alert resolved); the node publishes them.

Hysteresis, so a value hovering at a threshold does not flap: an alert fires
after its condition held for ``samples`` consecutive samples, and resolves
only after the value stayed below ``threshold * (1 - RESOLVE_MARGIN)`` (or,
for yes/no conditions, false) for as many samples.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from .collector import Snapshot

__all__ = [
    "MAX_LOG",
    "RESOLVE_MARGIN",
    "Alert",
    "AlertRule",
    "Alerts",
    "Severity",
    "Thresholds",
    "default_rules",
]

MAX_LOG = 200
RESOLVE_MARGIN = 0.05


class Severity(StrEnum):
    """How bad an alert is."""

    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """One firing of a rule (resolved once ``resolved_at`` is set)."""

    id: str
    rule: str
    severity: Severity
    value: float
    threshold: float
    started_at: float
    message: str
    tenant_id: str = ""
    resolved_at: float | None = None

    @property
    def firing(self) -> bool:
        """Whether it still fires."""
        return self.resolved_at is None


# A rule measures a snapshot: one value per subject ("" for the node itself,
# a tenant id for per-tenant rules).
Measure = Callable[[Snapshot], Iterable[tuple[str, float]]]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A threshold rule.

    Attributes:
        name: the rule's name (``cpu_high``).
        measure: the values to judge, per subject.
        threshold: the value above which the condition holds.
        samples: consecutive samples to fire, and to resolve.
        severity: how bad.
        describe: the sentence for people, from subject, value and threshold.
    """

    name: str
    measure: Measure
    threshold: float
    samples: int
    severity: Severity
    describe: Callable[[str, float, float], str]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The configurable thresholds (``alert_*`` settings); 0 turns a rule off."""

    cpu_percent: float = 85.0
    cpu_samples: int = 3
    memory_percent: float = 90.0
    latency_p99_ms: float = 100.0
    error_rate: float = 0.05
    error_min_calls: int = 20
    max_connections: int = 0
    tenant_connections: int = 0


def default_rules(t: Thresholds) -> list[AlertRule]:
    """The built-in rules with these thresholds (rules at 0 are left out)."""
    rules = [
        AlertRule(
            "cpu_high",
            lambda s: [("", s.system.cpu_percent)],
            t.cpu_percent,
            t.cpu_samples,
            Severity.WARNING,
            lambda _, v, th: f"CPU at {v:.0f} % (over {th:g} % for {t.cpu_samples} samples)",
        ),
        AlertRule(
            "memory_high",
            lambda s: [("", s.system.memory_percent)],
            t.memory_percent,
            1,
            Severity.CRITICAL,
            lambda _, v, th: f"memory at {v:.0f} % (over {th:g} %)",
        ),
        AlertRule(
            "latency_p99_high",
            lambda s: [("", s.latency_p99 * 1e3)] if s.latency_count else [("", 0.0)],
            t.latency_p99_ms,
            1,
            Severity.WARNING,
            lambda _, v, th: f"publish→deliver p99 at {v:.1f} ms (over {th:g} ms)",
        ),
        AlertRule(
            "error_rate_high",
            lambda s: [("", s.grpc_error_rate if s.grpc_calls >= t.error_min_calls else 0.0)],
            t.error_rate,
            1,
            Severity.WARNING,
            lambda _, v, th: f"{v:.1%} of gRPC calls failed (over {th:.0%})",
        ),
        AlertRule(
            "broker_unreachable",
            lambda s: [("", 0.0 if s.gauges.broker_healthy else 1.0)],
            0.5,
            1,
            Severity.CRITICAL,
            lambda *_: "the broker is unreachable",
        ),
        AlertRule(
            "connections_high",
            lambda s: [("", float(s.connections))],
            t.max_connections,
            1,
            Severity.WARNING,
            lambda _, v, th: f"{v:.0f} connections (over {th:g})",
        ),
        AlertRule(
            "tenant_connections_high",
            lambda s: [
                (tenant, float(n)) for tenant, n in s.gauges.connections_by_tenant.items() if tenant
            ],
            t.tenant_connections,
            1,
            Severity.WARNING,
            lambda tenant, v, th: f"tenant {tenant} has {v:.0f} connections (over {th:g})",
        ),
    ]
    return [rule for rule in rules if rule.threshold > 0]


@dataclass(slots=True)
class _Track:
    over: int = 0
    under: int = 0
    alert: Alert | None = None


class Alerts:
    """The alert state of a node, and its bounded log.

    Args:
        rules: the rules to evaluate.
        id_prefix: makes alert ids unique across nodes.
    """

    def __init__(self, rules: Iterable[AlertRule], id_prefix: str = "a") -> None:
        self.rules = list(rules)
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._log: deque[Alert] = deque(maxlen=MAX_LOG)
        self._ids = itertools.count(1)
        self._prefix = id_prefix

    def evaluate(self, snapshot: Snapshot, now: float) -> list[Alert]:
        """Judge a snapshot.

        Returns:
            The alerts that fired (``firing``) or resolved (not ``firing``) now.
        """
        changed: list[Alert] = []
        for rule in self.rules:
            seen: set[str] = set()
            for subject, value in rule.measure(snapshot):
                seen.add(subject)
                changed += self._judge(rule, subject, value, now)
            # Subjects that vanished (a tenant with no connections left) count as under.
            for (name, subject), track in list(self._tracks.items()):
                if name == rule.name and subject not in seen and track.alert is not None:
                    changed += self._judge(rule, subject, 0.0, now)
        return changed

    def _judge(self, rule: AlertRule, subject: str, value: float, now: float) -> list[Alert]:
        track = self._tracks.setdefault((rule.name, subject), _Track())
        if track.alert is None:
            track.over = track.over + 1 if value > rule.threshold else 0
            if track.over < rule.samples:
                return []
            track.over = track.under = 0
            track.alert = Alert(
                f"{self._prefix}-{next(self._ids)}",
                rule.name,
                rule.severity,
                value,
                rule.threshold,
                now,
                rule.describe(subject, value, rule.threshold),
                subject,
            )
            self._log.appendleft(track.alert)
            return [track.alert]
        track.under = track.under + 1 if value < rule.threshold * (1 - RESOLVE_MARGIN) else 0
        if track.under < rule.samples:
            return []
        resolved = replace(track.alert, value=value, resolved_at=now)
        self._replace(track.alert, resolved)
        del self._tracks[(rule.name, subject)]
        return [resolved]

    def _replace(self, old: Alert, new: Alert) -> None:
        for index, logged in enumerate(self._log):
            if logged.id == old.id:
                self._log[index] = new
                return
        self._log.appendleft(new)

    def firing(self) -> list[Alert]:
        """Alerts firing now, oldest first."""
        alerts = [t.alert for t in self._tracks.values() if t.alert is not None]
        return sorted(alerts, key=lambda a: a.started_at)

    def recent(self) -> list[Alert]:
        """The log, newest first."""
        return list(self._log)

    def clear(self, *, include_firing: bool = False) -> int:
        """Empty the log (and forget firing alerts when asked).

        Returns:
            How many alerts were removed.
        """
        firing_ids = {a.id for a in self.firing()}
        if include_firing:
            removed = len({a.id for a in self._log} | firing_ids)
            self._log.clear()
            self._tracks.clear()
            return removed
        kept = [a for a in self._log if a.id in firing_ids]
        removed = len(self._log) - len(kept)
        self._log.clear()
        self._log.extend(kept)
        return removed
