"""A pool of worker processes for one model, driven from asyncio.

Hand-written rather than ``concurrent.futures.ProcessPoolExecutor`` because
the server needs what that executor hides: per-worker readiness (``/readyz``),
sending a batch only to an *idle* worker (so requests keep accumulating into
the next batch while all workers are busy), and surviving a worker crash
(the executor marks itself broken; we fail that batch and start a
replacement).

Each worker has one blocking reader thread; it hands messages to the event
loop with ``call_soon_threadsafe``, so the loop never blocks on a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from tenfold.errors import NotReady, WorkerCrashed
from tenfold.runtime.worker import worker_main

log = logging.getLogger("tenfold.pool")

BatchOutcome = tuple[list[list[Any]], list[tuple[int, float]]]


class LoadFailed(RuntimeError):
    """A worker could not load the model (the message says why)."""


@dataclass(eq=False)
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    ready: asyncio.Future[dict[str, Any]]
    inflight: tuple[int, asyncio.Future[BatchOutcome]] | None = None
    alive: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        return self.alive and self.ready.done() and self.inflight is None


class WorkerPool:
    """``workers`` processes that each ``load()`` the model of ``target`` once."""

    def __init__(
        self,
        target: str,
        *,
        workers: int = 1,
        options: dict[str, Any] | None = None,
        on_change: Callable[[], None] | None = None,
        on_restart: Callable[[], None] | None = None,
        start_timeout_s: float = 600.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.target = target
        self.size = workers
        self.options = options or {}
        self._on_change = on_change or (lambda: None)
        self._on_restart = on_restart or (lambda: None)
        self._start_timeout_s = start_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._batch_ids = itertools.count()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.restarts = 0
        self.threads_per_worker = max(1, (os.cpu_count() or 1) // workers)

    # -- lifecycle -----------------------------------------------------------
    def _spawn(self, index: int) -> _Worker:
        assert self._loop is not None
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main,
            args=(child_conn, self.target, self.options, self.threads_per_worker),
            name=f"tenfold-worker-{index}",
        )
        process.start()
        child_conn.close()
        worker = _Worker(index, process, parent_conn, self._loop.create_future())
        threading.Thread(
            target=self._read, args=(worker,), name=f"tenfold-reader-{index}", daemon=True
        ).start()
        return worker

    async def start(self, on_ready: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        """Start every worker and wait until all have loaded the model."""
        self._loop = asyncio.get_running_loop()
        self._workers = [self._spawn(i) for i in range(self.size)]
        for worker in self._workers:
            info = await asyncio.wait_for(asyncio.shield(worker.ready), self._start_timeout_s)
            if on_ready:
                on_ready(worker.index, info)
        self._on_change()

    async def close(self, timeout_s: float = 5.0) -> None:
        self._closing = True
        for worker in self._workers:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(("stop",))
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            await asyncio.to_thread(worker.process.join, max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join, 1.0)
            worker.conn.close()
            if worker.inflight:
                _, fut = worker.inflight
                if not fut.done():
                    fut.set_exception(NotReady("the server is shutting down"))

    # -- state ---------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self._workers) and all(w.ready.done() for w in self._workers)

    def idle_count(self) -> int:
        return sum(1 for w in self._workers if w.idle)

    # -- running batches -----------------------------------------------------
    async def run(self, sub_batches: list[list[Any]]) -> BatchOutcome:
        """Run sub-batches, in order, on one idle worker; returns outcomes and timings."""
        worker = next((w for w in self._workers if w.idle), None)
        if worker is None:
            raise NotReady("no idle worker")
        assert self._loop is not None
        batch_id = next(self._batch_ids)
        future: asyncio.Future[BatchOutcome] = self._loop.create_future()
        worker.inflight = (batch_id, future)
        try:
            worker.conn.send(("batch", batch_id, sub_batches))
        except (OSError, ValueError) as exc:
            worker.inflight = None
            raise WorkerCrashed(f"worker {worker.index} is gone: {exc}") from exc
        return await future

    # -- the reader threads and their callbacks (run on the loop) -------------
    def _read(self, worker: _Worker) -> None:
        assert self._loop is not None
        loop = self._loop
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # an unpicklable output: the pipe is out of sync
                log.error("worker %d sent an unreadable message: %s", worker.index, exc)
                break
            try:
                loop.call_soon_threadsafe(self._on_message, worker, message)
            except RuntimeError:
                return  # loop closed
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_exit, worker)

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.info = message[1]
            if not worker.ready.done():
                worker.ready.set_result(message[1])
            self._on_change()
        elif kind == "load_failed":
            if not worker.ready.done():
                worker.ready.set_exception(LoadFailed(f"{self.target}: {message[1]}"))
        elif kind == "result":
            _, batch_id, outcomes, timings = message
            if worker.inflight and worker.inflight[0] == batch_id:
                _, future = worker.inflight
                worker.inflight = None
                if not future.done():
                    future.set_result((outcomes, timings))
                self._on_change()

    def _on_exit(self, worker: _Worker) -> None:
        worker.alive = False
        if self._closing:
            return
        worker.process.join(0.1)
        code = worker.process.exitcode
        if not worker.ready.done():
            worker.ready.set_exception(
                LoadFailed(f"{self.target}: worker exited with code {code} while loading")
            )
            return
        log.error(
            "worker %d of %s died (exit code %s); restarting", worker.index, self.target, code
        )
        if worker.inflight:
            _, future = worker.inflight
            worker.inflight = None
            if not future.done():
                future.set_exception(
                    WorkerCrashed(
                        f"the worker process died (exit code {code}) while running this item"
                    )
                )
        self.restarts += 1
        self._on_restart()
        replacement = self._spawn(worker.index)
        self._workers[self._workers.index(worker)] = replacement
        replacement.ready.add_done_callback(lambda _f: self._on_change())
