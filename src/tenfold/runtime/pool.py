"""A pool of worker processes for one model, driven from asyncio.

Hand-written rather than ``concurrent.futures.ProcessPoolExecutor`` because
the server needs what that executor hides: per-worker readiness (``/readyz``),
sending a batch only to an *idle* worker (so requests keep accumulating into
the next batch while all workers are busy), and surviving a worker crash
(the executor marks itself broken; we fail that batch and start a
replacement), a worker that hangs (a watchdog kills it: a crash), and a
replacement that cannot load (restarted with backoff; after
``max_load_failures`` failed loads in a row the pool reports the cause in
:attr:`WorkerPool.error` and the model stops being ready until a load succeeds).

Each worker has one blocking reader thread; it hands messages to the event
loop with ``call_soon_threadsafe``, so the loop never blocks on a pipe; it
also decodes each item's outcome and reaps the process when the pipe closes.
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

from tenfold.errors import NotReady, WorkerCrashed, shutting_down
from tenfold.runtime.worker import decode_outcomes, worker_main

log = logging.getLogger("tenfold.pool")

BatchOutcome = tuple[list[list[Any]], list[tuple[int, float]]]

#: Grace over the request timeout before a running batch counts as hung.
HANG_GRACE_S = 30.0


def hang_timeout_for(request_timeout_ms: float) -> float:
    """The watchdog limit that goes with a request timeout: past it, no caller waits."""
    return request_timeout_ms / 1000.0 + HANG_GRACE_S


#: The watchdog's default: the one for the server's default request timeout (30 s).
DEFAULT_HANG_TIMEOUT_S = hang_timeout_for(30_000)


def restart_delay_s(failures: int, *, base_s: float, cap_s: float) -> float:
    """Wait before starting a replacement after ``failures`` failed loads in a row of one
    worker slot: none after a loaded worker died, then ``base_s``, doubling, at most ``cap_s``."""
    if failures <= 0:
        return 0.0
    return min(cap_s, base_s * 2.0 ** (failures - 1))


class LoadFailed(RuntimeError):
    """A worker could not load the model (the message says why)."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed load as seen: nobody may await a replacement's readiness."""
    if not future.cancelled():
        future.exception()


@dataclass(eq=False)
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    ready: asyncio.Future[dict[str, Any]]
    replacement: bool = False
    inflight: tuple[int, asyncio.Future[BatchOutcome]] | None = None
    alive: bool = True
    loaded: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    watchdog: asyncio.TimerHandle | None = None
    killed_because: str | None = None

    @property
    def idle(self) -> bool:
        return self.alive and self.loaded and self.inflight is None


class WorkerPool:
    """``workers`` processes that each ``load()`` the model of ``target`` once.

    ``hang_timeout_s``: a batch running longer gets its worker killed (None: never).
    ``restart_backoff_s``/``restart_backoff_max_s``: the wait before restarting a worker
    slot whose replacement failed to load, doubling per failure. ``max_load_failures``
    failed loads in a row of one slot set :attr:`error` (not ready), until one succeeds.
    """

    def __init__(
        self,
        target: str,
        *,
        workers: int = 1,
        options: dict[str, Any] | None = None,
        on_change: Callable[[], None] | None = None,
        on_restart: Callable[[], None] | None = None,
        start_timeout_s: float = 600.0,
        hang_timeout_s: float | None = DEFAULT_HANG_TIMEOUT_S,
        restart_backoff_s: float = 1.0,
        restart_backoff_max_s: float = 60.0,
        max_load_failures: int = 3,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if hang_timeout_s is not None and hang_timeout_s <= 0:
            raise ValueError("hang_timeout_s must be positive (or None)")
        if max_load_failures < 1:
            raise ValueError("max_load_failures must be at least 1")
        self.target = target
        self.size = workers
        self.options = options or {}
        self._on_change = on_change or (lambda: None)
        self._on_restart = on_restart or (lambda: None)
        self._start_timeout_s = start_timeout_s
        self.hang_timeout_s = hang_timeout_s
        self.restart_backoff_s = restart_backoff_s
        self.restart_backoff_max_s = restart_backoff_max_s
        self.max_load_failures = max_load_failures
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._batch_ids = itertools.count()
        self._closing = False
        self._started = False
        #: slot -> (failed loads in a row, the last cause)
        self._load_failures: dict[int, tuple[int, str]] = {}
        self._respawns: dict[int, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.restarts = 0
        self.threads_per_worker = max(1, (os.cpu_count() or 1) // workers)

    # -- lifecycle -----------------------------------------------------------
    def _spawn(self, index: int, *, replacement: bool = False) -> _Worker:
        assert self._loop is not None
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main,
            args=(child_conn, self.target, self.options, self.threads_per_worker),
            name=f"tenfold-worker-{index}",
        )
        process.start()
        child_conn.close()
        worker = _Worker(index, process, parent_conn, self._loop.create_future(), replacement)
        worker.ready.add_done_callback(_retrieve)
        threading.Thread(
            target=self._read, args=(worker,), name=f"tenfold-reader-{index}", daemon=True
        ).start()
        return worker

    async def start(self, on_ready: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        """Start every worker and wait until all have loaded the model. If one fails to
        load (or time out), every worker is stopped before the error propagates: spawned
        worker processes are not daemons, and left running they would hang the exit."""
        self._loop = asyncio.get_running_loop()
        self._workers = [self._spawn(i) for i in range(self.size)]
        try:
            for n, worker in enumerate(self._workers, 1):
                info = await asyncio.wait_for(asyncio.shield(worker.ready), self._start_timeout_s)
                if n == len(self._workers):
                    self._started = True  # ready from now on, also while a replacement loads
                if on_ready:
                    on_ready(worker.index, info)
        except BaseException:
            await asyncio.shield(self.close(timeout_s=1.0))
            raise
        self._on_change()

    async def close(self, timeout_s: float = 5.0) -> None:
        self._closing = True
        for handle in self._respawns.values():
            handle.cancel()
        self._respawns.clear()
        for worker in self._workers:
            if worker.watchdog:
                worker.watchdog.cancel()
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
                    fut.set_exception(shutting_down())

    # -- state ---------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Every worker loaded once (a replacement loading later does not count) and no
        worker slot keeps failing to load. Requests queue while a replacement loads."""
        return self._started and self.error is None

    @property
    def error(self) -> str | None:
        """Why the model cannot be served: a worker slot failed ``max_load_failures``
        loads in a row (retried with backoff; cleared by a successful load)."""
        for failures, cause in self._load_failures.values():
            if failures >= self.max_load_failures:
                return f"{cause} ({failures} failed loads in a row)"
        return None

    def idle_count(self) -> int:
        return sum(1 for w in self._workers if w.idle)

    def loaded_count(self) -> int:
        """Workers with the model loaded now (busy or idle): 0 while every slot reloads."""
        return sum(1 for w in self._workers if w.alive and w.loaded)

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
        if self.hang_timeout_s is not None:
            worker.watchdog = self._loop.call_later(
                self.hang_timeout_s, self._on_hung, worker, batch_id
            )
        return await future

    def _on_load_timeout(self, worker: _Worker) -> None:
        if self._closing or not worker.alive or worker.loaded or worker.ready.done():
            return
        log.error(
            "replacement worker %d of %s did not load within %g s; killing it",
            worker.index,
            self.target,
            self._start_timeout_s,
        )
        worker.killed_because = f"did not load within {self._start_timeout_s:g} s"
        with contextlib.suppress(OSError, ValueError, AttributeError):
            worker.process.kill()

    def _on_hung(self, worker: _Worker, batch_id: int) -> None:
        """The watchdog: a batch past ``hang_timeout_s`` holds its worker forever (nobody
        waits for it any more); kill the process, and the crash handling answers it."""
        worker.watchdog = None
        if self._closing or not worker.alive or not worker.inflight:
            return
        if worker.inflight[0] != batch_id:
            return
        worker.killed_because = (
            f"the worker was killed after running this item's batch for over "
            f"{self.hang_timeout_s:g} s (hung)"
        )
        log.error(
            "worker %d of %s has run one batch for over %g s (hung?); killing it",
            worker.index,
            self.target,
            self.hang_timeout_s,
        )
        with contextlib.suppress(OSError, ValueError, AttributeError):
            worker.process.kill()

    # -- the reader threads and their callbacks (run on the loop) -------------
    def _read(self, worker: _Worker) -> None:
        assert self._loop is not None
        loop = self._loop
        out_of_sync = False
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # an unreadable message: the pipe is out of sync
                log.error("worker %d sent an unreadable message: %s", worker.index, exc)
                out_of_sync = True
                break
            if message[0] == "result":  # decode here, off the loop, each item on its own
                _, batch_id, blobs, timings = message
                outcomes = [decode_outcomes(kind, payload, n) for kind, payload, n in blobs]
                message = ("result", batch_id, outcomes, timings)
            try:
                loop.call_soon_threadsafe(self._on_message, worker, message)
            except RuntimeError:
                return  # loop closed
        if not self._closing:
            self._reap(worker.process, kill=out_of_sync)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_exit, worker)

    @staticmethod
    def _reap(process: BaseProcess, *, kill: bool) -> None:
        """Wait for a worker whose pipe closed (in its reader thread, never on the loop);
        one still alive after a second, or whose pipe is out of sync, is of no use: kill it."""
        if not kill:
            process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join(1.0)

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.info = message[1]
            worker.loaded = True
            if not worker.ready.done():
                worker.ready.set_result(message[1])
            if self._load_failures.pop(worker.index, None) is not None:
                log.info("worker %d of %s loaded after failed loads", worker.index, self.target)
            self._on_change()
        elif kind == "load_failed":
            if not worker.ready.done():
                worker.ready.set_exception(LoadFailed(f"{self.target}: {message[1]}"))
        elif kind == "result":
            _, batch_id, outcomes, timings = message
            if worker.inflight and worker.inflight[0] == batch_id:
                _, future = worker.inflight
                worker.inflight = None
                if worker.watchdog:
                    worker.watchdog.cancel()
                    worker.watchdog = None
                if not future.done():
                    future.set_result((outcomes, timings))
                self._on_change()

    def _on_exit(self, worker: _Worker) -> None:
        worker.alive = False
        if worker.watchdog:
            worker.watchdog.cancel()
            worker.watchdog = None
        if self._closing:
            return
        code = worker.process.exitcode  # reaped by the reader thread
        if not worker.loaded:
            if not worker.ready.done():
                why = worker.killed_because or f"worker exited with code {code} while loading"
                worker.ready.set_exception(LoadFailed(f"{self.target}: {why}"))
            if worker.replacement:
                exc = worker.ready.exception() if not worker.ready.cancelled() else None
                self._load_failed(worker, str(exc or f"worker exited with code {code}"))
            return  # a first load: start() reports it
        log.error(
            "worker %d of %s died (exit code %s); restarting", worker.index, self.target, code
        )
        if worker.inflight:
            _, future = worker.inflight
            worker.inflight = None
            if not future.done():
                future.set_exception(
                    WorkerCrashed(
                        worker.killed_because
                        or f"the worker process died (exit code {code}) while running this item"
                    )
                )
        self._replace(worker)

    def _load_failed(self, worker: _Worker, cause: str) -> None:
        failures = self._load_failures.get(worker.index, (0, ""))[0] + 1
        was_error = self.error
        self._load_failures[worker.index] = (failures, cause)
        delay = restart_delay_s(
            failures, base_s=self.restart_backoff_s, cap_s=self.restart_backoff_max_s
        )
        log.error(
            "a replacement worker %d of %s failed to load (%d in a row): %s; retrying in %.1f s",
            worker.index,
            self.target,
            failures,
            cause,
            delay,
        )
        assert self._loop is not None
        self._respawns[worker.index] = self._loop.call_later(delay, self._replace, worker)
        if was_error is None and self.error is not None:
            self._on_change()  # not ready any more: the model tells its callers why

    def _replace(self, worker: _Worker) -> None:
        self._respawns.pop(worker.index, None)
        if self._closing:
            return
        self.restarts += 1
        self._on_restart()
        replacement = self._spawn(worker.index, replacement=True)
        self._workers[self._workers.index(worker)] = replacement
        # A replacement's load gets the start timeout too: one that hangs is killed and
        # counts as a failed load (backoff, then the pool's error), instead of leaving
        # the slot loading forever while the pool says ready.
        assert self._loop is not None
        self._loop.call_later(self._start_timeout_s, self._on_load_timeout, replacement)
