"""Reading the publish script's reply (src/roomcast/brokers/redis/scripts.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from roomcast.brokers import Draft, Published, PublishedRun, Retention, expand
from roomcast.brokers.redis.scripts import published, published_runs
from roomcast.rooms import Room, RoomName

ROOM = Room.of(RoomName("global.lobby"), None)


def drafts_of(count: int) -> list[Draft]:
    return [Draft(ROOM, f"id-{i}", b"", 0, Retention(10, 60.0)) for i in range(count)]


def reply_of(entries: list[int | tuple[int, str, str]]) -> list[Any]:
    """A script reply as Redis sends it: the epoch, then an offset per event,
    or the first publish's [offset, epoch, id] for an idempotent repeat."""
    out: list[Any] = [b"ep"]
    for entry in entries:
        if isinstance(entry, tuple):
            offset, epoch, event_id = entry
            out.append([offset, epoch.encode(), event_id.encode()])
        else:
            out.append(entry)
    return out


def test_consecutive_new_events_are_runs_and_the_rest_stand_alone() -> None:
    reply = reply_of([5, 6, (3, "old", "first"), 0, 7, 8])
    assert published_runs(reply, drafts_of(6)) == [
        PublishedRun(["id-0", "id-1"], 5, "ep"),
        Published("first", 3, "old", duplicate=True),
        Published("id-3", 0, "ep"),
        PublishedRun(["id-4", "id-5"], 7, "ep"),
    ]


entries = st.lists(
    st.one_of(
        st.integers(0, 12),
        st.tuples(st.integers(0, 12), st.sampled_from(["ep", "old"]), st.text("abc", max_size=3)),
    ),
    max_size=12,
)


@given(entries)
def test_runs_spell_out_to_the_results_one_by_one(
    reply_entries: list[int | tuple[int, str, str]],
) -> None:
    reply, drafts = reply_of(reply_entries), drafts_of(len(reply_entries))
    assert expand(published_runs(reply, drafts)) == published(reply, drafts)
    for draft, result, entry in zip(drafts, published(reply, drafts), reply_entries, strict=True):
        assert result.duplicate == isinstance(entry, tuple)
        assert result.id == (entry[2] if isinstance(entry, tuple) else draft.id)
