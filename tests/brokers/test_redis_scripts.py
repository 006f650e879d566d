"""Reading the publish script's reply (src/roomcast/brokers/redis_scripts.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from roomcast.brokers import Published, PublishedRun, expand
from roomcast.brokers.redis_scripts import published, published_runs


def reply_of(*entries: tuple[int, int, str]) -> list[Any]:
    """A script reply: duplicate flag, offset, epoch and id per draft, as Redis sends them."""
    out: list[Any] = []
    for duplicate, offset, event_id in entries:
        out += [duplicate, offset, b"ep", event_id.encode()]
    return out


def test_consecutive_new_events_are_runs_and_the_rest_stand_alone() -> None:
    reply = reply_of((0, 5, "a"), (0, 6, "b"), (1, 3, "c"), (0, 0, "d"), (0, 7, "f"), (0, 8, "g"))
    assert published_runs(reply) == [
        PublishedRun(["a", "b"], 5, "ep"),
        Published("c", 3, "ep", duplicate=True),
        Published("d", 0, "ep"),
        PublishedRun(["f", "g"], 7, "ep"),
    ]


entries = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 12), st.text("abc", min_size=1, max_size=3)),
    max_size=12,
)


@given(entries)
def test_runs_spell_out_to_the_results_one_by_one(drafts: list[tuple[int, int, str]]) -> None:
    reply = reply_of(*drafts)
    assert expand(published_runs(reply)) == published(reply)
