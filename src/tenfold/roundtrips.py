"""Calls that arrive while a round trip is in flight share the next one.

redis-py sends each call as its own round trip and has no auto-pipelining (node-redis,
ioredis and Lettuce do), and each round trip costs the client far more CPU than the bytes
in it: ~180 us per GET on this project's 2-core benchmark machine, against ~11 us per key
inside one MGET. Under load, one round trip per request is most of a cache hit's cost.
:class:`RoundTripBatcher` is the dynamic batching tenfold does for models, applied to its
own store calls: when nothing is in flight a call goes out at once, by itself (no added
latency for a lone client); calls that arrive while one is in flight wait for it to end
and then go out together, in arrival order, in one round trip built by ``send``. A round
trip carries at most ``max_weight`` (each call weighs ``weight(item)``: 1, or its number
of keys), so that one round trip stays well within the client's timeout: 10,000 rate-limit
decisions in one script call, or 256 lookups of 64 embeddings in one MGET, outlasted a
100 ms timeout; a call heavier than that goes alone.

A caller cancelled before its round trip leaves (its own timeout, its client gone) is
dropped from it: nothing is sent for it. One cancelled after has had its call sent.

Failure: an exception from ``send`` (or a reply with the wrong number of results) reaches
every waiter of that round trip, as ``failure(exc)``; none hangs. After
:meth:`RoundTripBatcher.close`, calls not yet sent and new calls get
``failure(BatcherClosed())``; the round trip in flight is cancelled, or finished and
answered (``finish_in_flight=True``, for writes that must not be reported failed when made).

Waiting: a call waits for the round trip in flight when it arrived, then for those ahead
of it (up to one per call queued before it), then its own. With a healthy store that is a
few milliseconds; when the store hangs, each round trip ahead costs the client's timeout,
so callers bound their own wait (the cache's resilient wrapper, 0.25 s).
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
        max_weight: int = 256,
        weight: Callable[[T], int] | None = None,
    ) -> None:
        if max_weight < 1:
            raise ValueError(f"max_weight must be >= 1, got {max_weight}")
        self._send = send
        self._max_weight = max_weight
        self._weight = weight
        self._failure = failure
        self._name = name
        self._pending: list[tuple[T, int, asyncio.Future[R]]] = []  # (item, weight, future)
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
            except Exception as exc:  # the store's own errors, or a reply not understood
                mapped = self._failure(exc)
                if mapped is exc:  # already the caller's error type
                    raise
                raise mapped from exc
            finally:
                self._inline = False
                self._start_flusher()
        weight = 1 if self._weight is None else self._weight(item)  # raises in its caller
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, weight, future))
        return await future

    def _start_flusher(self) -> None:
        if self._pending and not self._closed and not self._busy():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)

    async def _round_trip(self, items: list[T]) -> Sequence[R]:
        self.round_trips += 1
        results = await self._send(items)
        if len(results) != len(items):
            raise ValueError(f"{len(results)} results for {len(items)} calls")
        return results

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The oldest waiting calls, up to ``max_weight`` (at least one); cancelled ones
        are dropped, not sent."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        total, taken = 0, 0
        for item, weight, future in self._pending:
            if future.done():  # cancelled while it waited
                taken += 1
                continue
            if batch and total + weight > self._max_weight:
                break
            batch.append((item, future))
            total += weight
            taken += 1
        del self._pending[:taken]
        return batch

    async def _flush(self) -> None:
        while self._pending and not self._closed:
            batch = self._next_batch()
            if not batch:
                continue
            try:
                results = await self._round_trip([item for item, _ in batch])
            except asyncio.CancelledError:
                self._fail(batch, BatcherClosed("closed"))
                raise
            except Exception as exc:  # the store's own errors, or a reply not understood
                self._fail(batch, exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # its caller may have been cancelled meanwhile
                    future.set_result(result)

    def _fail(self, batch: Sequence[tuple[T, asyncio.Future[R]]], exc: Exception) -> None:
        """Each waiter gets its own ``failure(exc)`` (one shared exception object would
        collect every waiter's traceback)."""
        for _, future in batch:
            if not future.done():
                mapped = self._failure(exc)
                if mapped is not exc:
                    mapped.__cause__ = exc
                future.set_exception(mapped)

    async def close(self, *, finish_in_flight: bool = False) -> None:
        """Stop: calls not yet sent, and later calls, fail with ``failure(BatcherClosed())``.
        The round trip in flight is cancelled (its callers fail the same way), or with
        ``finish_in_flight=True`` awaited, so its callers get its real answers: a store
        whose writes must not be reported failed when they were made (a queue) uses that.
        A lone call in flight from its caller's task finishes on its own either way."""
        self._closed = True
        never_sent = [(item, future) for item, _, future in self._pending]
        self._pending = []
        self._fail(never_sent, BatcherClosed("closed"))
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            if not finish_in_flight:
                flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
