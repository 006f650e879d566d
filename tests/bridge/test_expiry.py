"""Token expiry timers (src/roomcast/bridge/expiry.py), on a real event loop."""

from __future__ import annotations

import asyncio
import time

from roomcast.auth import Principal, Role
from roomcast.bridge.expiry import ExpiryWatch
from roomcast.rooms import TenantId

STEP = 0.1  # seconds; the timers below are a few steps long


class Session:
    """What the watch sees of a session: its principal, and what it was told."""

    def __init__(self, lifetime: float) -> None:
        self.principal = self.token(lifetime)
        self.warned: list[float] = []
        self.expired = 0

    @staticmethod
    def token(lifetime: float) -> Principal:
        return Principal("u1", TenantId("acme"), frozenset({Role.USER}), time.time() + lifetime)

    def token_expiring(self, expires_at: float) -> None:
        self.warned.append(expires_at)

    def watch(self, notice: float) -> ExpiryWatch[Session]:
        return ExpiryWatch(self, notice, expire)


def expire(session: Session) -> None:
    session.expired += 1


async def test_warns_ahead_then_expires() -> None:
    session = Session(lifetime=4 * STEP)
    session.watch(notice=2 * STEP)
    await asyncio.sleep(STEP)
    assert session.warned == []
    assert session.expired == 0
    await asyncio.sleep(2 * STEP)
    assert session.warned == [session.principal.expires_at]
    assert session.expired == 0
    await asyncio.sleep(2 * STEP)
    assert session.expired == 1


async def test_a_refresh_after_the_warning_keeps_the_session() -> None:
    session = Session(lifetime=3 * STEP)
    session.watch(notice=2 * STEP)
    await asyncio.sleep(2 * STEP)
    assert len(session.warned) == 1
    session.principal = Session.token(lifetime=8 * STEP)  # refreshed
    await asyncio.sleep(3 * STEP)
    assert session.expired == 0
    assert len(session.warned) == 1
    await asyncio.sleep(5 * STEP)  # the new token's warning comes in its turn
    assert session.warned[-1] == session.principal.expires_at


async def test_a_refresh_before_the_warning_moves_it() -> None:
    session = Session(lifetime=3 * STEP)
    session.watch(notice=STEP)
    session.principal = Session.token(lifetime=10 * STEP)
    await asyncio.sleep(4 * STEP)
    assert session.warned == []
    assert session.expired == 0


async def test_cancel_stops_everything() -> None:
    session = Session(lifetime=2 * STEP)
    watch = session.watch(notice=STEP)
    watch.cancel()
    watch.cancel()  # twice is harmless
    await asyncio.sleep(4 * STEP)
    assert session.warned == []
    assert session.expired == 0


async def test_an_already_expired_token_expires_at_once() -> None:
    session = Session(lifetime=-1.0)
    session.watch(notice=STEP)
    await asyncio.sleep(STEP)
    assert len(session.warned) == 1
    assert session.expired == 1
