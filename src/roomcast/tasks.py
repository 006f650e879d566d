"""Supervised background tasks: none dies unnoticed.

A task that raises is logged with its name, counted, and started again after
a backoff that doubles up to a ceiling; a task that returns is finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 10.0


class Supervisor:
    """Owns background tasks and restarts them when they fail."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run()`` under supervision as ``name``."""
        self.restarts.setdefault(name, 0)
        self._tasks[name] = asyncio.create_task(self._supervise(name, run), name=name)

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        backoff = INITIAL_BACKOFF
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.restarts[name] += 1
                log.exception("background task %s failed (restart %d)", name, self.restarts[name])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def close(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
