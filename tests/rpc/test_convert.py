"""Translations to protobuf (src/roomcast/rpc/convert.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from roomcast.brokers import Outcome, Published, PublishedRun, expand
from roomcast.errors import Forbidden, InvalidRoom, RoomcastError, TooLarge
from roomcast.rpc.convert import batch_response
from roomcast.v1 import realtime_pb2

published = st.builds(
    Published,
    id=st.text(alphabet="0123456789abcdef-", min_size=1, max_size=30),
    offset=st.integers(min_value=0, max_value=2**64 - 1),
    epoch=st.text(max_size=16),
    duplicate=st.booleans(),
)
runs = st.builds(
    PublishedRun,
    ids=st.lists(st.text(max_size=200), min_size=1, max_size=5),
    first_offset=st.integers(min_value=1, max_value=2**63),
    epoch=st.text(max_size=16),
)
refused = st.builds(
    lambda kind, message: kind(message),
    st.sampled_from([Forbidden, InvalidRoom, TooLarge]),
    st.text(max_size=200),
)


def expected(outcomes: list[Outcome]) -> realtime_pb2.PublishBatchResponse:
    """The response as the protobuf library builds it."""
    response = realtime_pb2.PublishBatchResponse()
    for outcome in expand(outcomes):
        result = response.results.add()
        if isinstance(outcome, RoomcastError):
            result.error.code = outcome.status
            result.error.message = outcome.message
        else:
            result.published.offset = outcome.offset
            result.published.epoch = outcome.epoch
            result.published.id = outcome.id
            result.published.duplicate = outcome.duplicate
    return response


@given(st.lists(st.one_of(published, runs, refused), max_size=50))
def test_batch_response_is_what_the_protobuf_api_encodes(outcomes: list[Outcome]) -> None:
    assert batch_response(outcomes) == expected(outcomes).SerializeToString()


def test_a_run_answers_one_result_per_event_with_consecutive_offsets() -> None:
    run = PublishedRun(["n-1", "n-2", "n-3"], 126, "e1")
    decoded = realtime_pb2.PublishBatchResponse.FromString(
        batch_response([Published("a", 9, "e0"), run])
    )
    assert [(r.published.id, r.published.offset, r.published.epoch) for r in decoded.results] == [
        ("a", 9, "e0"),
        ("n-1", 126, "e1"),
        ("n-2", 127, "e1"),
        ("n-3", 128, "e1"),
    ]


def test_batch_response_keeps_order_and_the_oneof() -> None:
    outcomes: list[Published | RoomcastError] = [
        Published("a-1", 7, "e1"),
        Forbidden("may not publish"),
        Published("a-2", 0, "e1", duplicate=True),
    ]
    decoded = realtime_pb2.PublishBatchResponse.FromString(batch_response(outcomes))
    assert [r.WhichOneof("result") for r in decoded.results] == ["published", "error", "published"]
    assert decoded.results[1].error.code == "PERMISSION_DENIED"
    assert decoded.results[2].published.duplicate is True


def test_empty_batch_is_an_empty_response() -> None:
    assert batch_response([]) == b""
