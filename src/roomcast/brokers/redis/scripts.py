"""The broker's Lua scripts: how to call them, and what their replies mean.

Scripts run by SHA (``EVALSHA``) with the source as fallback. Redis caches
a script by the SHA1 of its source; the SHA is computed here, so nothing
needs loading up front: a server that does not know the script yet (new,
restarted, flushed, or a new cluster primary) answers NOSCRIPT once, and
the call is repeated with ``EVAL``, which also caches it there.

The argument layouts are documented at the top of each ``.lua`` file;
building and reading them is pure and lives here, next to nothing else.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import NoScriptError

from ...history import new_epoch
from ...rooms import Room
from ..values import Draft, Published, PublishedRun
from .clients import CommandClient
from .envelope import SIGNAL
from .keys import KeySpace

__all__ = [
    "MAX_OFFSET",
    "PUBLISH",
    "READ",
    "Call",
    "PublishOptions",
    "ReadReply",
    "Script",
    "milliseconds",
    "publish_call",
    "published",
    "published_runs",
    "read_call",
    "read_reply",
    "unknown_script",
]

Arguments = Sequence[str | bytes | int]
# Keys, then arguments, of one script run.
Call = tuple[list[str], list[Any]]
# Lua numbers are doubles: offsets beyond this would not be exact (and no
# room gets there).
MAX_OFFSET = 2**53 - 1


class Script:
    """One Lua script of this package.

    Args:
        filename: the ``.lua`` file beside this module.
    """

    def __init__(self, filename: str) -> None:
        self.source = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def run(self, client: CommandClient, keys: Sequence[str], args: Arguments) -> Any:
        """Run it on the shard of ``keys`` (the first key decides in a cluster)."""
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.execute_command("EVAL", self.source, len(keys), *keys, *args)

    def queue(
        self, pipeline: Pipeline | ClusterPipeline, keys: Sequence[str], args: Arguments
    ) -> None:
        """Add a run by SHA to ``pipeline`` (:func:`unknown_script` tells NOSCRIPT replies)."""
        pipeline.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def queue_source(
        self, pipeline: Pipeline | ClusterPipeline, keys: Sequence[str], args: Arguments
    ) -> None:
        """Add a run by source (after NOSCRIPT) to ``pipeline``."""
        pipeline.execute_command("EVAL", self.source, len(keys), *keys, *args)


def unknown_script(result: object) -> bool:
    """Whether a pipelined result is NOSCRIPT (the script did not run)."""
    return isinstance(result, NoScriptError)


PUBLISH = Script("publish.lua")
READ = Script("read.lua")


def milliseconds(seconds: float) -> int:
    """A duration for Redis (``PX``, ``PEXPIRE``): whole milliseconds, at least 1."""
    return max(1, math.ceil(seconds * 1000))


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """What every publish of one broker passes the same.

    Attributes:
        sharded: a Redis Cluster (``SPUBLISH``, and the slot's feed channel).
        position_ms: how long a room's position outlives its history.
        idempotency_ms: how long an idempotency key is remembered.
    """

    sharded: bool
    position_ms: int
    idempotency_ms: int


def publish_call(keys: KeySpace, drafts: Sequence[Draft], options: PublishOptions) -> Call:
    """One run of ``publish.lua`` for drafts of one room, in order."""
    room = drafts[0].room
    retention = drafts[-1].retention
    names = [keys.meta(room.key), keys.log(room.key)]
    ttl_ms = milliseconds(retention.ttl)
    args: list[Any] = [
        b"SPUBLISH" if options.sharded else b"PUBLISH",
        keys.channel(room.key),
        keys.feed_of(room) if options.sharded else b"",
        new_epoch(),
        max(retention.size, 0),
        ttl_ms,
        ttl_ms + options.position_ms,
        options.idempotency_ms,
        room.key,
        len(drafts),
    ]
    # The events travel as one argument: redis-py's cost is per argument.
    events: list[bytes] = []
    for draft in drafts:
        index = 0
        if draft.idempotency_key:
            names.append(keys.idempotency(room.key, draft.idempotency_key))
            index = len(names)
        # Signals are never stored, whatever the draft says.
        skip = 1 if draft.skip_history or draft.signal else 0
        flags = SIGNAL if draft.signal else 0
        body = draft.body
        events.append(
            b"%s %d %d %d %d %d\n"
            % (draft.id.encode(), draft.accepted_ns, skip, index, flags, len(body))
        )
        events.append(body)
    args.append(b"".join(events))
    return names, args


def published(reply: Sequence[Any], drafts: Sequence[Draft]) -> list[Published]:
    """The results of a publish run of ``drafts``, one per draft."""
    epoch = reply[0].decode()
    return [
        _repeat(entry) if isinstance(entry, list) else Published(draft.id, entry, epoch)
        for draft, entry in zip(drafts, reply[1:], strict=True)
    ]


def published_runs(reply: Sequence[Any], drafts: Sequence[Draft]) -> list[Published | PublishedRun]:
    """The results of a publish run of ``drafts``, with consecutive stored events as runs.

    A run's events follow one another: each is new (not an idempotent
    repeat) and took the offset after the one before (a script run is one
    room's, in one epoch). One outcome per draft otherwise, as :func:`published`.
    """
    epoch = reply[0].decode()
    outcomes: list[Published | PublishedRun] = []
    run: PublishedRun | None = None
    last = -1
    for draft, entry in zip(drafts, reply[1:], strict=True):
        if isinstance(entry, list):
            run, last = None, -1
            outcomes.append(_repeat(entry))
        elif run is not None and entry == last + 1:
            run.ids.append(draft.id)
            last = entry
        elif entry:
            run, last = PublishedRun([draft.id], entry, epoch), entry
            outcomes.append(run)
        else:
            run, last = None, -1
            outcomes.append(Published(draft.id, 0, epoch))
    return outcomes


def _repeat(entry: Sequence[Any]) -> Published:
    """An idempotent repeat: the first publish's offset, epoch and id."""
    return Published(entry[2].decode(), entry[0], entry[1].decode(), duplicate=True)


def read_call(keys: KeySpace, room: Room, first: int, limit: int, size: int, ttl_ms: int) -> Call:
    """One run of ``read.lua``: events from offset ``first`` on, at most ``limit``.

    ``size`` and ``ttl_ms`` of -1 use the retention stored with the room.
    """
    names = [keys.meta(room.key), keys.log(room.key)]
    return names, [min(first, MAX_OFFSET), limit, size, ttl_ms]


@dataclass(frozen=True, slots=True)
class ReadReply:
    """What ``read.lua`` answered.

    Attributes:
        epoch: the room's epoch ("" for a room Redis does not know).
        top: its newest offset.
        oldest: the oldest offset held (``top + 1`` when none).
        entries: ``(offset, body)`` of the events read, oldest first.
    """

    epoch: str
    top: int
    oldest: int
    entries: list[tuple[int, bytes]]


def read_reply(reply: Sequence[Any]) -> ReadReply:
    """Parse a reply of ``read.lua``."""
    entries = [(reply[i], reply[i + 1]) for i in range(3, len(reply), 2)]
    return ReadReply(reply[0].decode(), reply[1], reply[2], entries)
