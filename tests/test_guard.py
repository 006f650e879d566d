"""The memory guard: over the ceiling it refuses, back under 90 % of it it lets go."""

from __future__ import annotations

import pytest

from roomcast.errors import Overloaded, ServerBusy
from roomcast.guard import MemoryGuard, default_limit


def test_over_the_ceiling_reads_and_connections_are_refused_until_well_under() -> None:
    guard = MemoryGuard(1000)
    assert not guard.observe(1000)  # at the ceiling is not over it
    guard.check("history")
    assert guard.observe(1001)
    with pytest.raises(Overloaded, match="history: the server is over its memory budget"):
        guard.check("history")
    with pytest.raises(ServerBusy) as busy:
        guard.check_connection()
    assert busy.value.close_code == 1013
    # No flapping at the line: it lifts under 90 %.
    assert not guard.observe(950)
    assert guard.over
    assert guard.observe(899)
    guard.check("history")
    guard.check_connection()


def test_the_default_ceiling_is_most_of_the_memory_there_is() -> None:
    import psutil

    limit = default_limit()
    assert 0 < limit <= psutil.virtual_memory().total
