"""Limits on what one client may send: a token bucket, and cursor coalescing.

Pure: time is passed in, so every decision is deterministic and testable
without a clock or an event loop.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CursorThrottle", "TokenBucket"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up.

    Args:
        rate: tokens added per second.
        burst: the bucket's size, and what it starts with.
        now: the current time (seconds).
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Take one token; False when the bucket is empty."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass(slots=True)
class _Slot(Generic[V]):
    sent_at: float
    pending: V | None = None
    waiting: bool = False


class CursorThrottle(Generic[K, V]):
    """At most one update per key per ``interval``; the latest one wins.

    :meth:`offer` says whether to send an update now; when it does not, the
    update is kept (replacing any older one) and the caller is told when to
    ask :meth:`due` for it.

    Args:
        interval: seconds between two updates of one key.
        max_keys: keys remembered at most; beyond, idle keys are forgotten.
    """

    def __init__(self, interval: float, max_keys: int = 100_000) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._slots: dict[K, _Slot[V]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def offer(self, key: K, value: V, now: float) -> float | None:
        """Offer an update.

        Returns:
            None when ``value`` should be sent now; otherwise the time at
            which to call :meth:`due` — or -1.0 when a call is already due
            for this key (the value replaced the one waiting).
        """
        slot = self._slots.get(key)
        if slot is None or (not slot.waiting and now - slot.sent_at >= self.interval):
            if slot is None and len(self._slots) >= self.max_keys:
                self._forget_idle(now)
            self._slots[key] = _Slot(now)
            return None
        slot.pending = value
        if slot.waiting:
            return -1.0
        slot.waiting = True
        return slot.sent_at + self.interval

    def due(self, key: K, now: float) -> V | None:
        """The update waiting for ``key``, now to be sent (None if there is none)."""
        slot = self._slots.get(key)
        if slot is None or not slot.waiting:
            return None
        value, slot.pending, slot.waiting, slot.sent_at = slot.pending, None, False, now
        return value

    def _forget_idle(self, now: float) -> None:
        idle = [
            key
            for key, slot in self._slots.items()
            if not slot.waiting and now - slot.sent_at >= self.interval
        ]
        for key in idle:
            del self._slots[key]
