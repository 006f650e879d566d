"""The node's memory ceiling: above it, refuse what would grow memory instead of growing.

Every reply is paged against a byte budget and every connection's unsent
bytes are bounded, so no single client can grow the node much; the guard is
the backstop for many of them at once. The node samples its resident size
every ``memory_check_interval``; while it is over ``memory_limit_bytes``,
new WebSocket connections are closed with 1013 (Try Again Later) and
expensive reads (history, replays, presence, ListRooms) are refused with
``overloaded`` / RESOURCE_EXHAUSTED. Live traffic goes on: refusing to
deliver would lose events, and delivery's memory is bounded per connection.
It lifts once the node is back under :data:`RESUME_RATIO` of the ceiling,
so that it does not flap around the line.

Pure apart from :func:`default_limit` and :func:`resident_bytes`, which read
the system.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from .errors import Overloaded, ServerBusy

__all__ = ["AUTO_SHARE", "RESUME_RATIO", "MemoryGuard", "default_limit", "resident_bytes"]

#: Share of the memory the process may use that an automatic ceiling takes.
AUTO_SHARE = 0.8
RESUME_RATIO = 0.9
_CGROUP_MAX = Path("/sys/fs/cgroup/memory.max")  # cgroup v2; "max" when unlimited


def default_limit() -> int:
    """:data:`AUTO_SHARE` of the process's cgroup memory limit, else of the machine's memory."""
    total = psutil.virtual_memory().total
    try:
        text = _CGROUP_MAX.read_text().strip()
    except OSError:
        text = "max"
    if text.isdigit():
        total = min(total, int(text))
    return int(total * AUTO_SHARE)


def resident_bytes() -> int:
    """The process's resident set size now."""
    return int(psutil.Process().memory_info().rss)


class MemoryGuard:
    """Whether the node is over its memory ceiling, from samples it is given.

    Args:
        limit: the ceiling in bytes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.over = False
        self.resident = 0

    def observe(self, resident: int) -> bool:
        """Take a sample of the resident size.

        Returns:
            True when the guard changed state (went over, or came back under).
        """
        self.resident = resident
        if self.over:
            if resident < self.limit * RESUME_RATIO:
                self.over = False
                return True
        elif resident > self.limit:
            self.over = True
            return True
        return False

    def check(self, what: str) -> None:
        """Refuse ``what`` (an expensive read) while over the ceiling.

        Raises:
            Overloaded: naming what was refused.
        """
        if self.over:
            raise Overloaded(f"{what}: the server is over its memory budget; retry later")

    def check_connection(self) -> None:
        """Refuse a new connection while over the ceiling.

        Raises:
            ServerBusy: close code 1013.
        """
        if self.over:
            raise ServerBusy("server over its memory budget; retry later")
