"""Token expiry during a session: warn ahead of time, close if not refreshed.

One event-loop timer per connection, and nothing else: a sleeping task per
connection held a coroutine frame, a future and a timer, and closures over
the session (about 1.9 KiB per idle connection, measured with tracemalloc).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from ..auth import Principal

__all__ = ["Expiring", "ExpiryWatch"]


class Expiring(Protocol):
    """A session whose token can expire (and be refreshed)."""

    @property
    def principal(self) -> Principal:
        """Who the client is now; a refresh replaces it."""
        ...

    def token_expiring(self, expires_at: float) -> None:
        """Tell the client its token expires at ``expires_at``."""
        ...


Session = TypeVar("Session", bound=Expiring)


class ExpiryWatch(Generic[Session]):
    """Warns the session ``notice`` seconds before its token expires, and
    calls ``expire(session)`` at expiry unless the token was refreshed meanwhile.

    Args:
        session: the session watched.
        notice: seconds of warning.
        expire: ends a session (4002); shared by every watch of a server.
    """

    __slots__ = ("_expire", "_expires_at", "_handle", "_notice", "_session")

    def __init__(self, session: Session, notice: float, expire: Callable[[Session], None]) -> None:
        self._session = session
        self._notice = notice
        self._expire = expire
        self._expires_at = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._schedule_warning()

    def cancel(self) -> None:
        """Stop watching (the session ended)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _later(self, at: float, then: Callable[[], None]) -> None:
        delay = max(0.0, at - time.time())
        self._handle = asyncio.get_running_loop().call_later(delay, then)

    def _schedule_warning(self) -> None:
        self._expires_at = self._session.principal.expires_at
        self._later(self._expires_at - self._notice, self._on_notice)

    def _refreshed(self) -> bool:
        return self._session.principal.expires_at != self._expires_at

    def _on_notice(self) -> None:
        if self._refreshed():
            self._schedule_warning()
            return
        self._session.token_expiring(self._expires_at)
        self._later(self._expires_at, self._on_expiry)

    def _on_expiry(self) -> None:
        if self._refreshed():
            self._schedule_warning()
            return
        self._handle = None
        self._expire(self._session)
