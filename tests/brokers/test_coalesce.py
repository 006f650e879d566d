"""Auto-pipelining (src/roomcast/brokers/coalesce.py), on a real event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from roomcast.brokers.coalesce import Coalescer


class Recorder:
    """A batch runner that records the batches it ran."""

    def __init__(self, fail: Exception | None = None, pause: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.pause = pause

    async def run(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if self.pause:
            await asyncio.sleep(self.pause)
        if self.fail is not None:
            raise self.fail
        return [item * 10 for item in items]


async def test_calls_of_one_turn_make_one_batch_in_order() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run, most=100)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1, 2, 3, 4]]


async def test_a_lone_call_goes_out_alone() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run, most=100)
    assert await coalescer.submit(7) == 70
    assert await coalescer.submit(8) == 80
    assert recorder.batches == [[7], [8]]


async def test_batches_are_bounded() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run, most=2)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_batch_fails_each_of_its_calls() -> None:
    coalescer = Coalescer(Recorder(fail=RuntimeError("down")).run, most=10)
    outcomes = await asyncio.gather(
        *(coalescer.submit(i) for i in range(3)), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [RuntimeError] * 3


async def test_a_caller_that_gives_up_does_not_disturb_the_others() -> None:
    coalescer = Coalescer(Recorder(pause=0.05).run, most=10)
    impatient = asyncio.ensure_future(coalescer.submit(1))
    patient = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == 20
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_close_cancels_what_is_queued_and_in_flight() -> None:
    coalescer = Coalescer(Recorder(pause=10).run, most=10)
    in_flight = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0.01)  # dispatched, running
    queued = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0)  # queued, not yet dispatched
    coalescer.close()
    for call in (in_flight, queued):
        with pytest.raises(asyncio.CancelledError):
            await call
