"""The types of the client packages' fixtures (``tests/clients/conftest.py``).

Test modules annotate their arguments with these; a conftest cannot be imported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from roomcast_client import Event, Gap, RoomcastClient
from support.ws import Open

__all__ = ["Browser", "Connect", "Take"]

#: ``connect(token, target=None, **options)``: a client of the shared server, closed afterwards.
Connect = Callable[..., RoomcastClient]
#: ``await take(subscription, n, within=5)``: the next n items, within ``within`` UNITs.
Take = Callable[..., Awaitable[list[Event | Gap]]]
#: ``await browser(sub, *roles, tenant=None, on=None)``: a confirmed WebSocket client.
Browser = Open
