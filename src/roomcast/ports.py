"""What the core asks of the shells, and takes from them: its two ports.

- :class:`Recipient`: something on this node that receives events (a gRPC
  stream, a WebSocket connection); the node delivers to it.
- :class:`PublishInput`: one publish as a shell received it; the node
  publishes it;
- :class:`Publish`: a plain one, made in the core (a client's message, the
  server's own events);
- :class:`Publishes`: what can publish one (the node, to the parts it
  builds that publish: sessions, monitor, operations).

Their own module, below the node and everything the node builds, so that
all of them can name these shapes without importing the node.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .auth import Principal
from .brokers import Publication, Published

__all__ = ["Publish", "PublishInput", "Publishes", "Recipient"]


class Recipient(Hashable, Protocol):
    """Something on this node that receives events: a stream, a connection."""

    def deliver(self, publications: Sequence[Publication]) -> None:
        """Take events of one room, in offset order.

        Must not block; overflow is the recipient's to handle.
        """


class PublishInput(Protocol):
    """One publish as a shell received it.

    ``payload`` is the encoded ``Struct`` the gate (:mod:`roomcast.gate`)
    produced or checked: the gRPC shell reads requests through it
    (:mod:`roomcast.rpc.payloads`, whose views of ``PublishRequest`` have
    exactly these attributes), every other path encodes JSON with
    :func:`~roomcast.gate.encode_json`. It is embedded in the event as it is.
    """

    @property
    def room(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def skip_history(self) -> bool: ...
    @property
    def idempotency_key(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Publish:
    """A :class:`PublishInput` as a plain value; ``payload`` has passed the gate."""

    room: str
    event: str
    payload: bytes
    tenant_id: str = ""
    skip_history: bool = False
    idempotency_key: str = ""


class Publishes(Protocol):
    """Something that publishes one event (``roomcast.node.Node`` does)."""

    async def publish(
        self,
        principal: Principal,
        item: PublishInput,
        *,
        connection_id: str = "",
        is_member: bool = False,
    ) -> Published: ...
