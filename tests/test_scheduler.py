"""The scheduler (the async driver of the batching policy) against a fake executor
whose batches finish only when the test says so; time is a :class:`FakeClock`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tenfold.batching.policy import BatchConfig
from tenfold.clock import FakeClock
from tenfold.errors import DeadlineExceeded, NotReady, QueueFull
from tenfold.runtime.pool import BatchOutcome
from tenfold.runtime.scheduler import Scheduler


class GatedExecutor:
    """``workers`` workers; a batch runs until :meth:`finish` releases it."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.busy = 0
        self.batches: list[list[list[Any]]] = []
        self.gate = asyncio.Event()

    def idle_count(self) -> int:
        return self.workers - self.busy

    async def run(self, sub_batches: list[list[Any]]) -> BatchOutcome:
        self.busy += 1
        self.batches.append(sub_batches)
        try:
            await self.gate.wait()
            return [list(s) for s in sub_batches], [(len(s), 0.01) for s in sub_batches]
        finally:
            self.busy -= 1

    def finish(self) -> None:
        self.gate.set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def busy_scheduler(
    config: BatchConfig | None = None,
) -> tuple[Scheduler, GatedExecutor, FakeClock, asyncio.Task[list[Any]]]:
    """A scheduler whose only worker is busy with a batch that has no deadline."""
    clock = FakeClock()
    ex = GatedExecutor()
    s = Scheduler(
        ex, config or BatchConfig(batch_timeout_ms=0, length_aware=False), workers=1, clock=clock
    )
    s.start()
    running = asyncio.create_task(s.submit(["long"], deadline=None))
    await settle()
    assert ex.busy == 1 and s.depth == 0
    return s, ex, clock, running


async def test_a_deadline_is_enforced_while_every_worker_is_busy() -> None:
    s, ex, clock, running = await busy_scheduler()
    short = asyncio.create_task(s.submit(["short"], deadline=clock.now() + 0.1))
    await settle()  # queued; woken for it, the loop now sleeps until its deadline
    clock.advance(0.2)  # (the loop's timer runs on real time: 0.1 s, then it decides)
    (outcome,) = await asyncio.wait_for(short, 2.0)
    assert isinstance(outcome, DeadlineExceeded)
    assert ex.busy == 1  # still busy: the 504 did not wait for the worker
    ex.finish()
    assert await running == ["long"]
    await s.close()


async def test_an_arrival_with_an_earlier_deadline_wakes_the_sleeping_loop() -> None:
    s, ex, clock, running = await busy_scheduler()
    # The loop sleeps with no wake-up (nothing queued had a deadline).
    assert s._wake_at is None
    a = asyncio.create_task(s.submit(["a"], deadline=clock.now() + 5.0))
    await settle()
    assert s._wake_at == clock.now() + 5.0
    # A later deadline needs no new decision; an earlier one does.
    b = asyncio.create_task(s.submit(["b"], deadline=clock.now() + 9.0))
    await settle()
    assert s._wake_at == clock.now() + 5.0
    c = asyncio.create_task(s.submit(["c"], deadline=clock.now() + 1.0))
    await settle()
    assert s._wake_at == clock.now() + 1.0
    ex.finish()
    await running
    assert await asyncio.gather(a, b, c) == [["a"], ["b"], ["c"]]
    await s.close()


async def test_a_cancelled_request_leaves_the_queue_and_frees_its_places() -> None:
    config = BatchConfig(batch_timeout_ms=0, length_aware=False, max_queue_items=10)
    s, ex, _clock, running = await busy_scheduler(config)
    client = asyncio.create_task(s.submit(list(range(10)), deadline=None))
    await settle()
    assert s.depth == 10
    client.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await client
    assert s.depth == 0
    nxt = asyncio.create_task(s.submit(["x"], deadline=None))  # no false 429
    await settle()
    assert s.depth == 1
    ex.finish()
    assert await asyncio.wait_for(nxt, 2.0) == ["x"]
    assert await running == ["long"]
    assert ex.batches == [[["long"]], [["x"]]]  # the cancelled items were never computed
    await s.close()


async def test_queue_full_still_refuses_live_items() -> None:
    config = BatchConfig(batch_timeout_ms=0, length_aware=False, max_queue_items=2)
    s, ex, _clock, running = await busy_scheduler(config)
    queued = asyncio.create_task(s.submit([1, 2], deadline=None))
    await settle()
    with pytest.raises(QueueFull):
        await s.submit([3], deadline=None)
    ex.finish()
    assert await queued == [1, 2]
    await running
    await s.close()


async def test_items_still_queued_at_shutdown_get_not_ready() -> None:
    s, ex, clock, running = await busy_scheduler()
    queued = asyncio.create_task(s.submit(["q1", "q2"], deadline=clock.now() + 30.0))
    await settle()
    await s.close()
    outcomes = await asyncio.wait_for(queued, 2.0)
    assert [type(o) for o in outcomes] == [NotReady, NotReady]  # 503 + Retry-After, not 504
    assert "shutting down" in outcomes[0].message
    assert s.depth == 0
    ex.finish()
    await running


async def test_fail_queued_answers_only_the_queued_items() -> None:
    s, ex, _clock, running = await busy_scheduler()
    queued = asyncio.create_task(s.submit(["q"], deadline=None))
    await settle()
    s.fail_queued(NotReady("cannot load"))
    (outcome,) = await asyncio.wait_for(queued, 2.0)
    assert isinstance(outcome, NotReady) and outcome.message == "cannot load"
    ex.finish()
    assert await running == ["long"]  # the running batch is not touched
    await s.close()


async def test_close_is_not_lost_when_a_wake_up_fires_at_the_same_moment() -> None:
    """The loop sleeps on a timeout (a partial batch waits for more items); a wake-up and
    the shutdown's cancel land together. ``asyncio.wait_for`` on Python 3.11 swallowed that
    cancel, and close() waited for the loop forever."""
    ex = GatedExecutor()
    config = BatchConfig(max_batch_size=4, batch_timeout_ms=10_000, length_aware=False)
    s = Scheduler(ex, config, workers=1, clock=FakeClock())
    s.start()
    queued = asyncio.create_task(s.submit(["q"], deadline=None))
    await settle()  # the loop sleeps until the batch timeout
    s.notify()
    started = time.monotonic()
    async with asyncio.timeout(2.0):  # no new task: the cancel lands in this very step
        await s.close()
    # (The old loop ran on until the 2 s timeout's own cancel of close() got through.)
    assert time.monotonic() - started < 1.0
    assert [type(o) for o in await queued] == [NotReady]
