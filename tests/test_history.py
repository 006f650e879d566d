"""A room's history ring (src/roomcast/history.py)."""

from __future__ import annotations

import pytest

from roomcast.history import Page, Position, Recovery, RoomLog, new_epoch, recovery

EPOCH = "e1"


def filled(count: int, *, size: int = 10, ttl: float = 60.0, at: float = 0.0) -> RoomLog[str]:
    """A log holding events "ev1".."ev{count}", stored at time ``at``."""
    log: RoomLog[str] = RoomLog(size, ttl, EPOCH)
    for _ in range(count):
        offset = log.next_offset()
        log.store(offset, f"ev{offset}", at)
    return log


def test_offsets_start_at_one_and_increase_by_one() -> None:
    log: RoomLog[str] = RoomLog(3, 60.0, EPOCH)
    assert log.top == 0
    assert log.position == Position(0, EPOCH)
    assert [log.next_offset() for _ in range(5)] == [1, 2, 3, 4, 5]
    assert log.position == Position(5, EPOCH)


def test_a_new_log_draws_a_random_epoch() -> None:
    first: RoomLog[str] = RoomLog(1, 1.0)
    second: RoomLog[str] = RoomLog(1, 1.0)
    assert len(first.epoch) == 8
    assert first.epoch != second.epoch
    assert len({new_epoch() for _ in range(20)}) == 20


def test_an_empty_log() -> None:
    log: RoomLog[str] = RoomLog(5, 60.0, EPOCH)
    assert len(log) == 0
    assert log.oldest == 1
    assert log.read(None, 10, now=0.0) == Page([], Position(0, EPOCH), True)


def test_the_log_keeps_at_most_size_events() -> None:
    log = filled(7, size=3)
    assert len(log) == 3
    assert log.oldest == 5
    assert log.top == 7
    assert log.read(None, 10, now=0.0).items == ["ev5", "ev6", "ev7"]


def test_a_log_of_size_zero_keeps_nothing_but_counts_offsets() -> None:
    log = filled(4, size=0)
    assert len(log) == 0
    assert log.top == 4
    assert log.oldest == 5
    page = log.read(Position(2, EPOCH), 10, now=0.0)
    assert page.items == []
    assert page.recovered is False


def test_events_expire_after_the_ttl() -> None:
    log: RoomLog[str] = RoomLog(10, 5.0, EPOCH)
    for now in (0.0, 1.0, 2.0):
        log.store(log.next_offset(), f"at{now:g}", now)
    assert log.read(None, 10, now=4.999).items == ["at0", "at1", "at2"]
    # An event exactly ttl seconds old is gone.
    assert log.read(None, 10, now=5.0).items == ["at1", "at2"]
    assert log.read(None, 10, now=6.5).items == ["at2"]
    assert log.oldest == 3
    assert log.read(None, 10, now=100.0).items == []
    assert len(log) == 0
    # Offsets carry on after everything expired.
    assert log.oldest == log.top + 1 == 4


def test_expire_keeps_fresh_events() -> None:
    log = filled(3, ttl=10.0, at=100.0)
    log.expire(now=109.0)
    assert len(log) == 3
    log.expire(now=110.0)
    assert len(log) == 0


def test_read_from_a_recovered_position() -> None:
    log = filled(5)
    page = log.read(Position(2, EPOCH), 10, now=0.0)
    assert page == Page(["ev3", "ev4", "ev5"], Position(5, EPOCH), True, "")


def test_read_from_the_top_is_recovered_and_empty() -> None:
    log = filled(5)
    assert log.read(Position(5, EPOCH), 10, now=0.0) == Page([], Position(5, EPOCH), True)


def test_read_honours_the_limit() -> None:
    log = filled(5)
    assert log.read(Position(1, EPOCH), 2, now=0.0).items == ["ev2", "ev3"]
    assert log.read(None, 0, now=0.0).items == []
    # The page still reports the room's newest position, not the last item's.
    assert log.read(None, 1, now=0.0).top == Position(5, EPOCH)


def test_read_after_an_epoch_change_starts_from_the_oldest() -> None:
    log = filled(5, size=3)
    page = log.read(Position(4, "other"), 10, now=0.0)
    assert page == Page(
        ["ev3", "ev4", "ev5"],
        Position(5, EPOCH),
        False,
        "the room's history was reset (epoch changed)",
    )


def test_read_from_a_position_history_no_longer_reaches() -> None:
    log = filled(6, size=3)  # holds 4, 5, 6
    page = log.read(Position(2, EPOCH), 10, now=0.0)
    assert page.items == ["ev4", "ev5", "ev6"]
    assert page.recovered is False
    assert page.reason == "history no longer reaches back to offset 3"
    # Offset 3 is the last one lost: everything after it is still held.
    assert log.read(Position(3, EPOCH), 10, now=0.0).recovered is True


def test_read_from_a_position_ahead_of_the_room() -> None:
    log = filled(3)
    page = log.read(Position(9, EPOCH), 10, now=0.0)
    assert page.items == ["ev1", "ev2", "ev3"]
    assert page.recovered is False
    assert page.reason == "offset 9 is ahead of the room (newest is 3)"


def test_an_empty_epoch_with_offset_zero_reads_from_the_oldest() -> None:
    log = filled(3)
    assert log.read(Position(0, ""), 10, now=0.0) == Page(
        ["ev1", "ev2", "ev3"], Position(3, EPOCH), True
    )


def test_an_empty_epoch_with_offset_zero_after_trimming_is_not_recovered() -> None:
    log = filled(5, size=2)
    page = log.read(Position(0, ""), 10, now=0.0)
    assert page.items == ["ev4", "ev5"]
    assert page.recovered is False
    assert page.reason == "history no longer reaches back to offset 1"


def test_an_offset_without_its_epoch_is_not_recovered() -> None:
    log = filled(3)
    page = log.read(Position(2, ""), 10, now=0.0)
    assert page.items == ["ev1", "ev2", "ev3"]
    assert (page.recovered, page.reason) == (False, "a position with an offset needs its epoch")


def test_expiry_during_read_can_make_a_position_unrecoverable() -> None:
    log: RoomLog[str] = RoomLog(10, 5.0, EPOCH)
    log.store(log.next_offset(), "old", 0.0)
    log.store(log.next_offset(), "new", 3.0)
    assert log.read(Position(0, EPOCH), 10, now=4.0).recovered is True
    page = log.read(Position(0, EPOCH), 10, now=6.0)
    assert (page.items, page.recovered) == (["new"], False)


@pytest.mark.parametrize(
    ("since", "top", "oldest", "expected"),
    [
        (Position(0, ""), 0, 1, Recovery(True)),
        (Position(0, EPOCH), 0, 1, Recovery(True)),
        (Position(0, ""), 5, 1, Recovery(True)),
        (Position(0, ""), 5, 2, Recovery(False, "history no longer reaches back to offset 1")),
        (Position(3, EPOCH), 5, 4, Recovery(True)),
        (Position(3, EPOCH), 5, 5, Recovery(False, "history no longer reaches back to offset 4")),
        (Position(5, EPOCH), 5, 6, Recovery(True)),
        (Position(6, EPOCH), 5, 1, Recovery(False, "offset 6 is ahead of the room (newest is 5)")),
        (Position(1, ""), 5, 1, Recovery(False, "a position with an offset needs its epoch")),
        (
            Position(1, "stale"),
            5,
            1,
            Recovery(False, "the room's history was reset (epoch changed)"),
        ),
        # A stale epoch is reported even at offset 0.
        (
            Position(0, "stale"),
            0,
            1,
            Recovery(False, "the room's history was reset (epoch changed)"),
        ),
    ],
)
def test_recovery(since: Position, top: int, oldest: int, expected: Recovery) -> None:
    assert recovery(since, epoch=EPOCH, top=top, oldest=oldest) == expected


def test_log_recovery_uses_its_own_epoch_top_and_oldest() -> None:
    log = filled(5, size=2)
    assert log.recovery(Position(3, EPOCH)) == Recovery(True)
    assert log.recovery(Position(2, EPOCH)).recovered is False
    assert log.recovery(Position(5, "other")).recovered is False
