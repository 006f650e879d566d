"""The Redis broker (``redis://``, ``rediss://``, ``redis[s]+cluster://``).

- ``broker``: :class:`RedisBroker`, the :class:`~roomcast.brokers.broker.Broker`
  over Redis (docs/scaling.md);
- ``scripts`` with ``publish.lua`` and ``read.lua``: offsets, history and
  delivery in one script run per room;
- ``envelope``: the pub/sub message that carries a run of events;
- ``listener``: the pub/sub (or sharded pub/sub) connections;
- ``clients``: the command clients, plain or cluster;
- ``keys``: key and channel names;
- ``url``: the ``--broker`` URL (pure: imports no redis-py).

Loading the package imports no redis-py: :class:`RedisBroker` is loaded when
it is asked for, so the core reads a URL's scheme without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broker import RedisBroker

__all__ = ["RedisBroker"]


def __getattr__(name: str) -> object:
    if name == "RedisBroker":
        from .broker import RedisBroker

        return RedisBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
