"""Unexpected errors: one log line each, with a reference, rate-limited per class.

A client that finds an input the server cannot handle can send it again and
again; a traceback per frame turned ten frames of 880 bytes into 1.6 MB of
log once. So an unexpected error is logged as one line naming where it
happened, its class and a reference the client is given (never the
exception's text: :mod:`roomcast.errors`). The first error of each class a
process sees also logs a traceback of its innermost frames, once, for the
developer who has to fix it. Beyond :data:`PER_MINUTE` errors of one class
a minute the lines stop; the next line that gets through says how many were
suppressed.

Pure apart from the logger: time and references are passed in for tests.
"""

from __future__ import annotations

import logging
import secrets
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_CLASSES", "PER_MINUTE", "TRACEBACK_FRAMES", "Faults"]

PER_MINUTE = 10
TRACEBACK_FRAMES = 8
#: Exception classes tracked at most (the count is finite in practice; the
#: bound keeps it so whatever happens).
MAX_CLASSES = 256
_TEXT = 200


@dataclass(slots=True)
class _Allowance:
    tokens: float
    last: float
    suppressed: int = 0


class Faults:
    """Logs unexpected errors under a per-class budget.

    Args:
        logger: where the lines go.
        per_minute: lines per exception class per minute (also the burst).
        clock: seconds, monotonic.
        reference: makes a fresh reference.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_minute: int = PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        reference: Callable[[], str] = lambda: secrets.token_hex(4),
    ) -> None:
        self._log = logger
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._clock = clock
        self._reference = reference
        self._classes: dict[str, _Allowance] = {}
        self.count = 0

    def record(self, error: BaseException, where: str) -> str:
        """Log ``error`` (unless its class is over budget) and return its reference.

        Args:
            error: the unexpected exception.
            where: what failed, for the log ("frame on connection abc").

        Returns:
            The reference to give the client ("internal error (ref ...)").
        """
        self.count += 1
        reference = self._reference()
        name = f"{type(error).__module__}.{type(error).__qualname__}"
        now = self._clock()
        allowance = self._classes.get(name)
        first = allowance is None
        if allowance is None:
            if len(self._classes) >= MAX_CLASSES:
                self._classes.clear()
            allowance = self._classes[name] = _Allowance(self._burst, now)
        allowance.tokens = min(self._burst, allowance.tokens + (now - allowance.last) * self._rate)
        allowance.last = now
        if allowance.tokens < 1.0:
            allowance.suppressed += 1
            return reference
        allowance.tokens -= 1.0
        text = str(error).replace("\n", " ")
        if len(text) > _TEXT:
            text = text[: _TEXT - 3] + "..."
        suppressed = allowance.suppressed
        allowance.suppressed = 0
        line = f"{where} failed (ref {reference}): {name}: {text}"
        if suppressed:
            line += f" ({suppressed} more of this class not logged)"
        if first:
            frames = traceback.format_tb(error.__traceback__)[-TRACEBACK_FRAMES:]
            line += "\nfirst of its class; innermost frames:\n" + "".join(frames).rstrip()
        self._log.error(line)
        return reference
