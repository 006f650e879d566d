"""Unexpected errors in the log: one line each, a traceback once per class, rate-limited."""

from __future__ import annotations

import logging

import pytest

from roomcast.faults import PER_MINUTE, Faults


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def deep_failure(levels: int) -> RecursionError:
    def recurse(n: int) -> None:
        if n == 0:
            raise RecursionError("maximum recursion depth exceeded\nsecond line")
        recurse(n - 1)

    try:
        recurse(levels)
    except RecursionError as error:
        return error
    raise AssertionError("unreachable")


def test_a_flood_of_one_class_logs_a_bounded_number_of_short_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    faults = Faults(logging.getLogger("test.faults"), clock=clock, reference=lambda: "ref0")
    error = deep_failure(200)
    with caplog.at_level(logging.ERROR, logger="test.faults"):
        references = [faults.record(error, "frame on connection c1") for _ in range(1000)]
    assert set(references) == {"ref0"}
    assert faults.count == 1000
    assert len(caplog.records) == PER_MINUTE
    first, *rest = [record.getMessage() for record in caplog.records]
    # The first of its class carries a few innermost frames, never 200.
    assert "first of its class" in first
    assert first.count("\n") < 30
    for line in rest:
        assert line.startswith("frame on connection c1 failed (ref ref0): builtins.RecursionError")
        assert "\n" not in line
    # A minute later the class may speak again, and says what it held back.
    clock.now += 60
    with caplog.at_level(logging.ERROR, logger="test.faults"):
        caplog.clear()
        faults.record(error, "frame on connection c1")
    assert "(990 more of this class not logged)" in caplog.records[0].getMessage()


def test_classes_have_budgets_of_their_own(caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults(logging.getLogger("test.faults"), per_minute=2, clock=Clock())
    with caplog.at_level(logging.ERROR, logger="test.faults"):
        for _ in range(5):
            faults.record(ValueError("v"), "a")
            faults.record(KeyError("k"), "b")
    assert len(caplog.records) == 4


def test_long_messages_are_cut(caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults(logging.getLogger("test.faults"), clock=Clock())
    with caplog.at_level(logging.ERROR, logger="test.faults"):
        faults.record(ValueError("x" * 10_000), "a")
    assert len(caplog.records[0].getMessage().splitlines()[0]) < 400
