"""Time in tests: one unit for every wait, and polling until something holds.

Waits are multiples of ``UNIT`` (seconds); set ``ROOMCAST_TEST_UNIT`` to
stretch every wait at once on a slow machine.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable
from typing import Any

__all__ = ["UNIT", "eventually"]

UNIT = float(os.environ.get("ROOMCAST_TEST_UNIT", "1.0"))


async def eventually(
    check: Callable[[], Any], within: float = 10 * UNIT, every: float = 0.05 * UNIT
) -> Any:
    """Wait until ``check()`` (a function or a coroutine function) is truthy; its value."""
    async with asyncio.timeout(within):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            # Polling: what is checked (another process) has no event to wait on.
            await asyncio.sleep(every)
