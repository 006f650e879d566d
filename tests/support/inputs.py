"""Publishes as a shell hands them to the core: :class:`~roomcast.ports.PublishInput` values.

The payload goes through the gate (:func:`~roomcast.gate.encode_json`), as
every path but the gRPC one does it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from roomcast.gate import encode_json
from roomcast.ports import Publish

__all__ = ["Item", "item"]


Item = Publish


def item(
    room: str,
    event: str = "said",
    data: Mapping[str, Any] | None = None,
    *,
    tenant_id: str = "",
    skip_history: bool = False,
    idempotency_key: str = "",
) -> Item:
    """A publish to ``room`` of ``event`` with ``data`` (``{"text": "hi"}`` by default)."""
    return Item(
        room,
        event,
        encode_json({"text": "hi"} if data is None else data),
        tenant_id,
        skip_history,
        idempotency_key,
    )
