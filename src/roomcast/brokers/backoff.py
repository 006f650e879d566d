"""Reconnection delays: exponential, capped, with jitter. Pure.

Jitter spreads the reconnections of many nodes after one Redis restart, so
they do not all arrive in the same millisecond ("equal jitter": half the
delay fixed, half random).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["DEFAULT_INITIAL", "DEFAULT_MAXIMUM", "Backoff"]

DEFAULT_INITIAL = 0.05
DEFAULT_MAXIMUM = 5.0


@dataclass(slots=True)
class Backoff:
    """Delays before successive attempts: ``initial`` doubling up to ``maximum``.

    Attributes:
        initial: the first delay's upper bound, in seconds.
        maximum: no delay is longer, in seconds.
        attempts: failures since the last :meth:`reset`.
    """

    initial: float = DEFAULT_INITIAL
    maximum: float = DEFAULT_MAXIMUM
    attempts: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def next(self) -> float:
        """The delay before the next attempt (counts one more failure)."""
        ceiling = min(self.maximum, self.initial * (1 << min(self.attempts, 32)))
        self.attempts += 1
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Start over after a success."""
        self.attempts = 0
