"""The async driver of the batching policy for one model.

Thin by design: it keeps the queued items, asks
:func:`tenfold.batching.policy.decide` what to do whenever something changes
(an arrival while a worker is idle, a worker freeing up, a wake-up time), and
carries the decision out on the :class:`~tenfold.runtime.pool.WorkerPool`.
All choices (when to flush, how big, what to shed) are in the pure policy.

This is also the seam between the HTTP API and the workers: the API calls
:meth:`Scheduler.submit` with items and a deadline and gets one outcome per
item (an output or a :class:`~tenfold.errors.TenfoldError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tenfold.batching.latency import LatencyModel
from tenfold.batching.policy import BatchConfig, Pending, Verdict, admit, decide
from tenfold.clock import Clock, SystemClock
from tenfold.errors import (
    DeadlineExceeded,
    ModelError,
    Overloaded,
    QueueFull,
    TenfoldError,
    WorkerCrashed,
    shutting_down,
)
from tenfold.runtime.isolation import ItemFailure
from tenfold.runtime.pool import BatchOutcome
from tenfold.runtime.stats import ModelStats

log = logging.getLogger("tenfold.scheduler")


class Executor(Protocol):
    """Where batches run (a :class:`~tenfold.runtime.pool.WorkerPool`)."""

    def idle_count(self) -> int: ...

    async def run(self, sub_batches: list[list[Any]]) -> BatchOutcome: ...


@dataclass(slots=True, eq=False)
class _Entry:
    pending: Pending
    payload: Any
    future: asyncio.Future[Any]


BatchListener = Callable[[list[tuple[int, float]], list[float]], None]


class Scheduler:
    def __init__(
        self,
        executor: Executor,
        config: BatchConfig,
        *,
        workers: int,
        clock: Clock | None = None,
        stats: ModelStats | None = None,
        latency: LatencyModel | None = None,
        on_batch: BatchListener | None = None,
    ) -> None:
        self.executor = executor
        self.config = config
        self.workers = workers
        self.clock = clock or SystemClock()
        self.stats = stats or ModelStats()
        self.latency = latency or LatencyModel()
        self._on_batch = on_batch
        self._queue: dict[int, _Entry] = {}
        self._keys = itertools.count()
        self._wake = asyncio.Event()
        #: When the sleeping loop will decide again by itself (None: not before a wake).
        self._wake_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._batch_started: dict[int, float] = {}

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="tenfold-scheduler")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Never computed and not their fault: 503 + Retry-After, another server may take them.
        self.fail_queued(shutting_down())

    def fail_queued(self, error: TenfoldError) -> None:
        """Answer every queued (not yet running) item with ``error`` and empty the queue."""
        for entry in self._queue.values():
            if not entry.future.done():
                entry.future.set_result(error)
        self._queue.clear()

    def notify(self) -> None:
        """Something changed (e.g. a worker became idle): decide again."""
        self._wake.set()

    def check_admission(
        self, n_items: int, deadline: float | None, now: float | None = None
    ) -> float | None:
        """Refuse ``n_items`` arriving now, or return their effective deadline.

        Raises :class:`QueueFull` (429) or :class:`Overloaded` (503).
        """
        if now is None:
            now = self.clock.now()
        if self.config.adaptive and self.config.latency_budget_ms is not None:
            budget_deadline = now + self.config.latency_budget_ms / 1000.0
            deadline = budget_deadline if deadline is None else min(deadline, budget_deadline)
        verdict = admit(
            queued_items=len(self._queue),
            new_items=n_items,
            now=now,
            deadline=deadline,
            config=self.config,
            fit=self.latency.fit,
            workers=self.workers,
            busy_remaining_s=self._busy_remaining(now),
        )
        if verdict.verdict is Verdict.QUEUE_FULL:
            self.stats.shed["queue_full"] += 1
            raise QueueFull(
                f"{len(self._queue)} items are queued (limit {self.config.max_queue_items})",
                retry_after_s=verdict.retry_after_s,
            )
        if verdict.verdict is Verdict.SHED:
            self.stats.shed["predicted_miss"] += 1
            raise Overloaded(
                "predicted to miss the latency budget: "
                f"{(verdict.predicted_done or now) - now:.3f} s of work is ahead",
                retry_after_s=verdict.retry_after_s,
            )
        return deadline

    # -- the API side --------------------------------------------------------
    async def submit(
        self,
        items: list[Any],
        *,
        deadline: float | None,
        sizes: list[int | None] | None = None,
    ) -> list[Any]:
        """Queue ``items`` and wait for them. Returns one output or TenfoldError per item.

        Raises :class:`QueueFull` (429) or :class:`Overloaded` (503) when refused at arrival.
        """
        now = self.clock.now()
        # No await between admission and queueing: the check sees the true depth.
        deadline = self.check_admission(len(items), deadline, now)
        loop = asyncio.get_running_loop()
        entries = []
        for i, item in enumerate(items):
            key = next(self._keys)
            size = sizes[i] if sizes else None
            entry = _Entry(Pending(key, now, deadline, size), item, loop.create_future())
            self._queue[key] = entry
            entries.append(entry)
        # Decide again now if a worker can take it, or if its deadline comes before the
        # loop's next wake-up (with every worker busy the loop may sleep until one frees).
        if self.executor.idle_count() > 0 or (
            deadline is not None and (self._wake_at is None or deadline < self._wake_at)
        ):
            self._wake.set()
        try:
            return list(await asyncio.gather(*(e.future for e in entries)))
        finally:
            # A cancelled request (client gone) leaves the queue: never computed. Its
            # futures are cancelled, hence done; an answered entry has left already.
            for e in entries:
                self._queue.pop(e.pending.key, None)

    def _busy_remaining(self, now: float) -> float:
        if self.executor.idle_count() > 0 or not self._batch_started:
            return 0.0
        cap = self.config.max_batch_size
        return max(
            0.0,
            min(start + self.latency.predict(cap) - now for start in self._batch_started.values()),
        )

    # -- the driver loop -----------------------------------------------------
    async def _loop(self) -> None:
        while True:
            now = self.clock.now()
            self._drop_cancelled()
            decision = decide(
                [e.pending for e in self._queue.values()],
                now,
                self.config,
                self.latency.fit,
                idle_workers=self.executor.idle_count(),
            )
            for key in decision.expired:
                self._resolve(key, DeadlineExceeded("the deadline passed while queued"))
                self.stats.shed["deadline"] += 1
            for key in decision.shed:
                self._resolve(
                    key,
                    Overloaded("predicted to miss the latency budget", retry_after_s=1.0),
                )
                self.stats.shed["predicted_miss"] += 1
            if decision.batches:
                batch = [[self._queue.pop(k) for k in sub] for sub in decision.batches]
                task = asyncio.create_task(self._execute(batch, now))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                await asyncio.sleep(0)  # let the executor mark the worker busy
                continue
            self._wake.clear()
            self._wake_at = decision.wake_at
            timeout = None if decision.wake_at is None else max(0.0, decision.wake_at - now)
            try:
                # Not asyncio.wait_for: on 3.11 it swallows a cancel that arrives as the
                # wake-up fires, and close() would then wait for this loop forever.
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
            finally:
                self._wake_at = None

    def _drop_cancelled(self) -> None:
        for key in [k for k, e in self._queue.items() if e.future.done()]:
            del self._queue[key]

    def _resolve(self, key: int, outcome: Any) -> None:
        entry = self._queue.pop(key, None)
        if entry and not entry.future.done():
            entry.future.set_result(outcome)

    async def _execute(self, batch: list[list[_Entry]], started: float) -> None:
        token = id(batch)
        self._batch_started[token] = started
        waits = [started - e.pending.enqueued_at for sub in batch for e in sub]
        try:
            outcomes, timings = await self.executor.run([[e.payload for e in sub] for sub in batch])
        except TenfoldError as exc:
            for sub in batch:
                for e in sub:
                    if not e.future.done():
                        e.future.set_result(exc)
            return
        except Exception as exc:  # never leave a request hanging
            log.exception("batch failed outside the model")
            crash = WorkerCrashed(f"batch failed: {type(exc).__name__}: {exc}")
            for sub in batch:
                for e in sub:
                    if not e.future.done():
                        e.future.set_result(crash)
            return
        finally:
            self._batch_started.pop(token, None)
            self._wake.set()
        for sub, outs in zip(batch, outcomes, strict=True):
            for e, out in zip(sub, outs, strict=True):
                if isinstance(out, ItemFailure):
                    out = ModelError(out.message, details={"error_type": out.error_type})
                if not e.future.done():
                    e.future.set_result(out)
        for n, seconds in timings:
            self.latency.observe(n, seconds)
        self.stats.record_batch(self.clock.now(), timings, waits)
        if self._on_batch:
            self._on_batch(timings, waits)
