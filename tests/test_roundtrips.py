"""RoundTripBatcher: a lone call goes at once; calls made meanwhile share the next round trip.

``send`` here is a plain coroutine that records its batches and waits on a gate the test
opens, so that which calls share a round trip is decided by the test, not by timing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tenfold.roundtrips import BatcherClosed, RoundTripBatcher


class StoreDown(Exception):
    pass


class Store:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next: Exception | None = None
        self.short_reply = False

    async def send(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        answers = [10 * i for i in items]
        return answers[:-1] if self.short_reply else answers


def make(store: Store, max_weight: int = 256, weighted: bool = False) -> RoundTripBatcher[int, int]:
    return RoundTripBatcher(
        store.send,
        failure=lambda exc: StoreDown(f"down: {exc!r}"),
        max_weight=max_weight,
        weight=(lambda item: item) if weighted else None,
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def held(
    store: Store, batcher: RoundTripBatcher[int, int], queued: Sequence[int]
) -> tuple[asyncio.Task[int], list[asyncio.Task[int]]]:
    """Call 0 goes out alone and is held at the store's gate; ``queued`` calls wait
    behind it. The test opens the gate."""
    store.gate.clear()
    lone = asyncio.create_task(batcher.call(0))
    await settle()
    waiting = [asyncio.create_task(batcher.call(i)) for i in queued]
    await settle()
    return lone, waiting


async def test_a_lone_call_goes_at_once_by_itself() -> None:
    store = Store()
    batcher = make(store)
    assert await batcher.call(7) == 70
    assert await batcher.call(8) == 80
    assert store.batches == [[7], [8]]
    assert batcher.round_trips == 2


async def test_calls_made_while_one_is_in_flight_share_the_next_in_order() -> None:
    store = Store()
    batcher = make(store)
    first, rest = await held(store, batcher, range(1, 30))
    assert store.batches == [[0]]  # the rest wait for the round trip in flight
    store.gate.set()
    assert await asyncio.gather(first, *rest) == [10 * i for i in range(30)]
    assert store.batches == [[0], list(range(1, 30))]
    assert batcher.round_trips == 2


async def test_max_weight_bounds_each_round_trip() -> None:
    store = Store()
    batcher = make(store, max_weight=4)
    store.gate.clear()
    tasks = [asyncio.create_task(batcher.call(i)) for i in range(11)]
    await settle()
    store.gate.set()
    assert await asyncio.gather(*tasks) == [10 * i for i in range(11)]
    assert store.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    with pytest.raises(ValueError, match="max_weight"):
        make(store, max_weight=0)


async def test_calls_are_weighed_and_a_heavy_one_goes_alone() -> None:
    store = Store()
    batcher = make(store, max_weight=10, weighted=True)  # an item weighs its own value
    store.gate.clear()
    tasks = [asyncio.create_task(batcher.call(i)) for i in (1, 4, 5, 2, 30, 3, 3, 3)]
    await settle()
    store.gate.set()
    assert await asyncio.gather(*tasks) == [10, 40, 50, 20, 300, 30, 30, 30]
    assert store.batches == [[1], [4, 5], [2], [30], [3, 3, 3]]


@pytest.mark.parametrize("broken", ["raises", "short reply"])
async def test_a_failed_round_trip_reaches_every_waiter_and_the_next_one_works(
    broken: str,
) -> None:
    store = Store()
    batcher = make(store)
    first, waiting = await held(store, batcher, (1, 2, 3))
    if broken == "raises":
        store.fail_next = ConnectionError("gone")
        message = "gone"
    else:
        store.short_reply = True
        message = "0 results for 1 calls"
    store.gate.set()
    outcomes = await asyncio.wait_for(
        asyncio.gather(first, *waiting, return_exceptions=True), timeout=5
    )
    assert isinstance(outcomes[0], StoreDown) and message in str(outcomes[0])
    if broken == "raises":  # only the first round trip failed: the batch after it is fine
        assert outcomes[1:] == [10, 20, 30]
    else:  # every reply is one short
        assert all(isinstance(o, StoreDown) for o in outcomes[1:])
        assert "2 results for 3 calls" in str(outcomes[1])
    store.short_reply = False
    assert await batcher.call(5) == 50


async def test_a_cancelled_waiter_is_skipped_and_the_others_answered() -> None:
    store = Store()
    batcher = make(store)
    first, waiting = await held(store, batcher, (1, 2, 3))
    waiting[1].cancel()
    store.gate.set()
    done = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert done[0] == 0 and done[1] == 10 and done[3] == 30
    assert isinstance(done[2], asyncio.CancelledError)
    assert store.batches == [[0], [1, 3]]  # nothing was sent for the cancelled call


async def test_a_cancelled_lone_caller_still_lets_the_queued_calls_go() -> None:
    store = Store()
    batcher = make(store)
    lone, waiting = await held(store, batcher, (1, 2))
    lone.cancel()
    await settle()
    assert lone.cancelled()
    store.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*waiting), timeout=5) == [10, 20]
    assert store.batches == [[0], [1, 2]]


async def test_close_fails_the_queued_calls_and_every_later_one() -> None:
    store = Store()
    batcher = make(store)
    lone, queued = await held(store, batcher, (1, 2))
    await batcher.close()
    outcomes = await asyncio.gather(*queued, return_exceptions=True)
    assert all(isinstance(o, StoreDown) and "BatcherClosed" in str(o) for o in outcomes)
    store.gate.set()
    assert await lone == 0  # the lone call in flight finishes on its own
    with pytest.raises(StoreDown, match="BatcherClosed"):
        await batcher.call(3)
    assert issubclass(BatcherClosed, RuntimeError)


async def test_a_weight_that_raises_fails_its_own_call_only() -> None:
    store = Store()

    def weight(item: int) -> int:
        if item < 0:
            raise TypeError("no weight")
        return 1

    batcher: RoundTripBatcher[int, int] = RoundTripBatcher(
        store.send, failure=lambda exc: StoreDown(repr(exc)), weight=weight
    )
    lone, (bad, good) = await held(store, batcher, (-1, 2))
    store.gate.set()
    done = await asyncio.wait_for(asyncio.gather(lone, bad, good, return_exceptions=True), 5)
    assert done[0] == 0 and isinstance(done[1], TypeError) and done[2] == 20


@pytest.mark.parametrize("finish", [False, True])
async def test_close_cancels_or_finishes_the_round_trip_in_flight(finish: bool) -> None:
    sent: list[list[int]] = []
    release: list[asyncio.Event] = []

    async def send(items: list[int]) -> list[int]:
        sent.append(list(items))
        release.append(asyncio.Event())
        await release[-1].wait()  # each round trip waits for the test to let it answer
        return [10 * i for i in items]

    batcher: RoundTripBatcher[int, int] = RoundTripBatcher(
        send, failure=lambda exc: StoreDown(repr(exc))
    )
    lone = asyncio.create_task(batcher.call(0))
    await settle()
    in_flight = [asyncio.create_task(batcher.call(i)) for i in (1, 2)]
    await settle()
    release[0].set()
    assert await lone == 0
    await settle()
    assert sent == [[0], [1, 2]]  # the flusher's round trip is out
    never_sent = asyncio.create_task(batcher.call(3))
    await settle()
    closing = asyncio.create_task(batcher.close(finish_in_flight=finish))
    await settle()
    release[1].set()
    await closing
    done = await asyncio.gather(*in_flight, never_sent, return_exceptions=True)
    if finish:  # sent, so answered
        assert done[:2] == [10, 20]
    else:
        assert all(isinstance(d, StoreDown) and "BatcherClosed" in str(d) for d in done[:2])
        assert done[0] is not done[1]  # each waiter its own exception object
    assert isinstance(done[2], StoreDown) and "BatcherClosed" in str(done[2])
    assert sent == [[0], [1, 2]]  # 3 was never sent
