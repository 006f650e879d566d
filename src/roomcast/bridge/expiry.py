"""Token expiry during a session: warn ahead of time, close if not refreshed.

A pair of event-loop timers per connection rather than a task: a sleeping
task holds a coroutine frame, a future and a timer (about 1.9 KiB per idle
connection, measured with tracemalloc); a timer handle is what it really
needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..auth import Principal

__all__ = ["ExpiryWatch"]


class ExpiryWatch:
    """Sends ``token.expiring`` ``notice`` seconds before the token expires,
    and expires the session at expiry unless the token was refreshed meanwhile.

    Args:
        principal: the session's principal now (it changes on refresh).
        notice: seconds of warning.
        warn: sends the ``token.expiring`` frame, given the expiry time.
        expire: ends the session (4002).
    """

    __slots__ = ("_expire", "_handle", "_notice", "_principal", "_warn")

    def __init__(
        self,
        principal: Callable[[], Principal],
        notice: float,
        warn: Callable[[float], None],
        expire: Callable[[], None],
    ) -> None:
        self._principal = principal
        self._notice = notice
        self._warn = warn
        self._expire = expire
        self._handle: asyncio.TimerHandle | None = None
        self._schedule_warning()

    def cancel(self) -> None:
        """Stop watching (the session ended)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _later(self, at: float, then: Callable[[float], None], expires_at: float) -> None:
        delay = max(0.0, at - time.time())
        self._handle = asyncio.get_running_loop().call_later(delay, then, expires_at)

    def _schedule_warning(self) -> None:
        expires_at = self._principal().expires_at
        self._later(expires_at - self._notice, self._on_notice, expires_at)

    def _on_notice(self, expires_at: float) -> None:
        if self._principal().expires_at != expires_at:
            self._schedule_warning()  # refreshed meanwhile
            return
        self._warn(expires_at)
        self._later(expires_at, self._on_expiry, expires_at)

    def _on_expiry(self, expires_at: float) -> None:
        if self._principal().expires_at != expires_at:
            self._schedule_warning()
            return
        self._handle = None
        self._expire()
