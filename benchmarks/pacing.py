"""Publishing on a schedule, shared by the fan-out benchmark's publishers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

__all__ = ["schedule"]


async def schedule(rate: float, seconds: float) -> AsyncIterator[tuple[int, float]]:
    """Yield ``(n, due)`` for ``rate`` events a second over ``seconds``, from 1.

    ``due`` is when the event was due (``time.monotonic()``). Latency measured
    from it, not from when the event actually left, shows a server that falls
    behind (no coordinated omission).
    """
    start = time.monotonic()
    n = 0
    while n / rate < seconds:
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        n += 1
        yield n, due
