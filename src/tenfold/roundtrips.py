"""Calls that arrive while a round trip is in flight share the next one.

redis-py sends each call as its own round trip and has no auto-pipelining (node-redis,
ioredis and Lettuce do), and each round trip costs the client far more CPU than the bytes
in it: ~180 us per GET on this project's 2-core benchmark machine, against ~11 us per key
inside one MGET. Under load, one round trip per request is most of a cache hit's cost.
:class:`RoundTripBatcher` is the dynamic batching tenfold does for models, applied to its
own store calls: when nothing is in flight a call goes out at once, by itself (no added
latency for a lone client); calls that arrive while one is in flight wait for it to end
and then go out together, in arrival order, in one round trip built by ``send`` (at most
``max_batch`` calls per round trip, so that one round trip stays within the client's
timeout: 10,000 rate-limit decisions in one script call outlasted a 100 ms timeout).

Failure: an exception from ``send`` (or a reply with the wrong number of results) reaches
every waiter of that round trip, as ``failure(exc)``; none hangs. A waiter cancelled
meanwhile is skipped. After :meth:`RoundTripBatcher.close`, waiters and new calls get
``failure(BatcherClosed())``.

A waiter may wait for the round trip in flight when it arrived, then its own: with a
client timeout of T per round trip, at most 2T before it hears of an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["BatcherClosed", "RoundTripBatcher"]

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """The batcher was closed before this call's round trip."""


class RoundTripBatcher(Generic[T, R]):
    """``RoundTripBatcher(send, failure=lambda exc: StoreDown(str(exc)))``;
    ``await batcher.call(item)`` answers ``send([..., item, ...])[its index]``."""

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        failure: Callable[[Exception], Exception],
        name: str = "tenfold-roundtrips",
        max_batch: int = 256,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._send = send
        self._max_batch = max_batch
        self._failure = failure
        self._name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._inline = False  # a lone call is in flight from its caller's own task
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        #: Round trips made (one per batch), for tests and curiosity.
        self.round_trips = 0

    def _busy(self) -> bool:
        return self._inline or (self._flusher is not None and not self._flusher.done())

    async def call(self, item: T) -> R:
        if self._closed:
            raise self._failure(BatcherClosed("closed"))
        if not self._busy():
            # Nothing in flight: go now, from this task (no task switch, no added latency).
            self._inline = True
            try:
                return (await self._round_trip([item]))[0]
            finally:
                self._inline = False
                self._start_flusher()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        return await future

    def _start_flusher(self) -> None:
        if self._pending and not self._closed and not self._busy():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)

    async def _round_trip(self, items: list[T]) -> Sequence[R]:
        self.round_trips += 1
        try:
            results = await self._send(items)
            if len(results) != len(items):
                raise ValueError(f"{len(results)} results for {len(items)} calls")
        except Exception as exc:  # the store's own errors, or a reply not understood
            raise self._failure(exc) from exc
        return results

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._round_trip([item for item, _ in batch])
            except asyncio.CancelledError:
                _fail(batch, self._failure(BatcherClosed("closed")))
                raise
            except Exception as exc:
                _fail(batch, exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # its caller may have been cancelled meanwhile
                    future.set_result(result)

    async def close(self) -> None:
        """Stop: the round trip of queued calls is cancelled and they, and later calls,
        fail with ``failure(BatcherClosed())``. A lone call in flight finishes on its own."""
        self._closed = True
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        # Also the waiters no flush took yet.
        _fail(self._pending, self._failure(BatcherClosed("closed")))
        self._pending = []


def _fail(batch: list[tuple[T, asyncio.Future[R]]], error: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
