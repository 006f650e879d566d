"""Failed authentications, counted per address and per claimed subject.

More than ``limit`` failures from one address within ``window`` seconds make
one :class:`FailedLoginAlert`; while the address keeps failing, at most one
more per ``window``. Pure: the caller passes the time in.

Counts are kept as a sliding window of :data:`BUCKETS` runs per key (failures
less than ``window / BUCKETS`` apart share a run), so memory per key is fixed
however fast a key fails, and a count is exact to within one run at the old
edge of the window. Addresses and subjects are each capped at
``max_tracked``; the least recently failing one is forgotten first.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import InvalidArgument
from ..rooms import parse_segment
from .addresses import IPAddress, normalize

__all__ = [
    "BUCKETS",
    "MAX_SUBJECTS_PER_ADDRESS",
    "MAX_TOKEN_CHARS",
    "FailedLoginAlert",
    "FailedLogins",
    "SlidingCount",
    "claimed_subject",
]

K = TypeVar("K")
V = TypeVar("V")

BUCKETS = 12
# Subjects an alert names for one address (the most recent ones).
MAX_SUBJECTS_PER_ADDRESS = 10
# Longer "tokens" are not even decoded for their subject.
MAX_TOKEN_CHARS = 16 * 1024


def claimed_subject(token: str | None) -> str | None:
    """The ``sub`` a token claims, read without verifying anything.

    Only for counting: the claim of a token that failed verification is
    whatever its sender wrote. It is returned only when it is a valid
    subject (1-64 characters of ``A-Z a-z 0-9 _ -``), so an alert never
    carries arbitrary text; the token itself is never kept.
    """
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    body = parts[1]
    try:
        claims: Any = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(subject, str):
        return None
    try:
        return parse_segment(subject, field_name="sub")
    except InvalidArgument:
        return None


@dataclass(slots=True)
class _Run:
    first: float
    last: float
    count: int


class SlidingCount:
    """Events in the last ``window`` seconds, in at most about :data:`BUCKETS` runs.

    Args:
        window: seconds.
    """

    __slots__ = ("_runs", "_span", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._span = window / BUCKETS
        self._runs: deque[_Run] = deque()

    def add(self, now: float) -> None:
        """Count one event at ``now``."""
        self._expire(now)
        runs = self._runs
        if runs and now - runs[-1].first < self._span:
            runs[-1].last = now
            runs[-1].count += 1
        else:
            runs.append(_Run(now, now, 1))

    def count(self, now: float) -> int:
        """Events in the window ending at ``now``."""
        self._expire(now)
        return sum(run.count for run in self._runs)

    @property
    def runs(self) -> int:
        """How many runs are held (the memory a key costs)."""
        return len(self._runs)

    @property
    def first_seen(self) -> float:
        """The oldest event still counted (0.0 when none)."""
        return self._runs[0].first if self._runs else 0.0

    @property
    def last_seen(self) -> float:
        """The newest event (0.0 when none)."""
        return self._runs[-1].last if self._runs else 0.0

    def _expire(self, now: float) -> None:
        # A run goes once its newest event is out of the window; its older
        # events are counted until then (at most one run's worth).
        runs, horizon = self._runs, now - self.window
        while runs and runs[0].last <= horizon:
            runs.popleft()


@dataclass(frozen=True, slots=True)
class FailedLoginAlert:
    """Too many failed authentications from one address.

    Attributes:
        ip_address: where they came from.
        attempts: failures from it in the window.
        window: the window, in seconds.
        first_seen: the first failure counted (seconds since the epoch).
        last_seen: the latest failure.
        subjects: the subjects claimed from the address (most recent last),
            each with its failures in the window from any address.
    """

    ip_address: IPAddress
    attempts: int
    window: float
    first_seen: float
    last_seen: float
    subjects: tuple[tuple[str, int], ...]

    def payload(self) -> dict[str, Any]:
        """The ``security.alert`` payload."""
        return {
            "type": "failed_login",
            "attempts": self.attempts,
            "ip_address": str(self.ip_address),
            "window": self.window,
            "first_seen": round(self.first_seen, 3),
            "last_seen": round(self.last_seen, 3),
            "subjects": [
                {"subject": subject, "attempts": attempts} for subject, attempts in self.subjects
            ],
        }


class _Source:
    __slots__ = ("alerted_at", "failures", "subjects")

    def __init__(self, window: float) -> None:
        self.failures = SlidingCount(window)
        self.subjects: OrderedDict[str, None] = OrderedDict()
        self.alerted_at: float | None = None


class FailedLogins:
    """Counts failed authentications and decides when they make an alert.

    Args:
        limit: more failures than this from one address within ``window``
            make an alert; 0 never alerts (failures are still counted).
        window: seconds.
        max_tracked: addresses kept, and subjects kept, at most.
    """

    def __init__(self, *, limit: int, window: float, max_tracked: int) -> None:
        self.limit = limit
        self.window = window
        self.max_tracked = max_tracked
        self._sources: OrderedDict[IPAddress, _Source] = OrderedDict()
        self._subjects: OrderedDict[str, SlidingCount] = OrderedDict()

    def record(
        self, address: IPAddress | None, subject: str | None, now: float
    ) -> FailedLoginAlert | None:
        """Count one failure; the alert it completes, if any.

        Args:
            address: the client's address (None when unknown: only the
                subject is counted).
            subject: the subject the token claimed (see :func:`claimed_subject`).
            now: seconds since the epoch.
        """
        if subject is not None:
            self._touch(self._subjects, subject, lambda: SlidingCount(self.window)).add(now)
        if address is None:
            return None
        address = normalize(address)
        source = self._touch(self._sources, address, lambda: _Source(self.window))
        if source.failures.count(now) == 0:
            source.subjects.clear()  # a new episode names only its own subjects
        source.failures.add(now)
        if subject is not None:
            source.subjects[subject] = None
            source.subjects.move_to_end(subject)
            if len(source.subjects) > MAX_SUBJECTS_PER_ADDRESS:
                source.subjects.popitem(last=False)
        attempts = source.failures.count(now)
        if self.limit <= 0 or attempts <= self.limit:
            return None
        if source.alerted_at is not None and now - source.alerted_at < self.window:
            return None  # once per window, however long the address keeps failing
        source.alerted_at = now
        return FailedLoginAlert(
            ip_address=address,
            attempts=attempts,
            window=self.window,
            first_seen=source.failures.first_seen,
            last_seen=source.failures.last_seen,
            subjects=tuple((s, self.subject_attempts(s, now)) for s in source.subjects),
        )

    def attempts(self, address: IPAddress, now: float) -> int:
        """Failures from ``address`` in the window ending at ``now``."""
        source = self._sources.get(normalize(address))
        return 0 if source is None else source.failures.count(now)

    def subject_attempts(self, subject: str, now: float) -> int:
        """Failures claiming ``subject``, from any address, in the window ending at ``now``."""
        failures = self._subjects.get(subject)
        return 0 if failures is None else failures.count(now)

    @property
    def tracked(self) -> tuple[int, int]:
        """How many addresses and subjects are held."""
        return len(self._sources), len(self._subjects)

    def _touch(self, table: OrderedDict[K, V], key: K, make: Callable[[], V]) -> V:
        value = table.get(key)
        if value is None:
            value = table[key] = make()
            if len(table) > self.max_tracked:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return value
