"""Redis brokers as "nodes" for tests: started, collecting what they deliver, closed.

Each test's brokers share a key prefix no other test uses, so tests on one
Redis never see each other's rooms.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from roomcast.brokers.backoff import Backoff
from roomcast.brokers.redis import RedisBroker
from support.brokers import Node
from support.waiting import UNIT

__all__ = ["quick_backoff", "redis_nodes"]


def quick_backoff() -> Backoff:
    """Quick reconnections, so fault tests do not wait long."""
    return Backoff(initial=0.05 * UNIT, maximum=0.5 * UNIT)


@asynccontextmanager
async def redis_nodes(url: str) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    """A factory of started Redis brokers on ``url`` under a fresh prefix."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in url else "?"
    nodes: list[Node] = []

    async def start(**options: Any) -> Node:
        options.setdefault("publish_timeout", 5 * UNIT)
        options.setdefault("backoff", quick_backoff())
        broker = RedisBroker(f"{url}{separator}prefix={prefix}", **options)
        node = Node(broker)
        await broker.start(node.events)
        nodes.append(node)
        return node

    try:
        yield start
    finally:
        for node in nodes:
            await node.broker.close()
