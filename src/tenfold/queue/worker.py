"""The queue worker: claim batches, run the model, write results, repeat.

::

    run_worker("classify", "sqlite:///data/queue.db", max_batch_size=64)

One model per worker process; its queue is the model's ``name``. Each loop
claims up to ``max_batch_size`` jobs (blocking up to ``idle_wait_ms`` for the
first; a partial batch then lingers ``batch_timeout_ms`` and claims once more
to fill up), validates inputs
with the model's ``input_model`` (invalid -> ``failed``, never retried), runs
``predict`` through :func:`tenfold.runtime.isolation.run_isolated` on a
thread so heartbeats keep the leases alive, and writes each outcome: a result
(fenced by the lease), or a failure that is retried with backoff or
dead-lettered alone while its batch-mates succeed.

On SIGTERM/SIGINT the worker stops claiming, lets the in-flight batch finish
within ``grace_s``, and returns. A batch that outlives the grace period ran:
its jobs are failed as retryable (``WorkerStopped``), so the attempt counts
and a job that never finishes is dead-lettered in the end, as one whose worker
keeps dying is. A queue that cannot be reached (``QueueUnavailable``) is waited
out with backoff; the worker does not exit for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tenfold.errors import QueueUnavailable
from tenfold.model import Model, load_model_class
from tenfold.queue.backend import QueueBackend
from tenfold.queue.job import Claim, JobError
from tenfold.queue.jsonsafe import to_jsonable
from tenfold.queue.status import JobStatus
from tenfold.queue.url import from_url
from tenfold.runtime.isolation import ItemFailure, run_isolated

log = logging.getLogger("tenfold.queue.worker")

_DEFAULT_BATCH = 32


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    max_batch_size: int = _DEFAULT_BATCH
    batch_timeout_ms: float = 10.0
    lease_ms: float = 30_000.0
    #: How long one claim blocks on an empty queue (also bounds the reaction to SIGTERM).
    idle_wait_ms: float = 1_000.0
    grace_s: float = 30.0
    #: Drain the queue and return (tests, batch jobs) instead of waiting for more work.
    burst: bool = False
    worker_id: str = field(default_factory=lambda: default_worker_id())

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.batch_timeout_ms < 0 or self.idle_wait_ms < 0 or self.grace_s < 0:
            raise ValueError("batch_timeout_ms, idle_wait_ms and grace_s must be >= 0")
        if self.lease_ms <= 0:
            raise ValueError("lease_ms must be greater than 0")

    @property
    def heartbeat_interval_s(self) -> float:
        return self.lease_ms / 3000


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(slots=True)
class WorkerStats:
    batches: int = 0
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    failed: int = 0
    lost: int = 0  # lease lost before the write (another worker took the job over)
    released: int = 0
    #: The in-flight batch outlived the grace period; its thread is still running.
    abandoned: bool = False

    def summary(self) -> str:
        mean = self.claimed / self.batches if self.batches else 0.0
        return (
            f"{self.batches} batches, {self.claimed} jobs claimed (mean batch {mean:.1f}), "
            f"{self.succeeded} succeeded, {self.retried} retried, {self.dead} dead, "
            f"{self.failed} failed, {self.lost} lost, {self.released} released"
        )


class Worker:
    """A model bound to a queue. ``run()`` loops; ``run_once()`` handles one batch."""

    def __init__(
        self,
        model: Model[Any, Any],
        queue: QueueBackend,
        config: WorkerConfig | None = None,
        *,
        queue_name: str | None = None,
        observe_wait: Callable[[float], None] | None = None,
    ) -> None:
        """``observe_wait`` gets each claimed job's queue wait in seconds (lease time
        minus the time the job last became claimable: enqueue, a retry's due time, the
        expiry of a lease it was taken over from; the backends keep that in ``queued_at``;
        both the queue's clock), e.g. a Prometheus histogram's ``observe``."""
        from pydantic import TypeAdapter

        self.model = model
        self.queue = queue
        self.config = config or WorkerConfig()
        self.queue_name = queue_name or type(model).name
        self.observe_wait = observe_wait
        self.stats = WorkerStats()
        self.stop = asyncio.Event()
        input_model = type(model).input_model
        self._adapter = TypeAdapter(input_model) if input_model is not None else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenfold-predict")

    async def run(self) -> WorkerStats:
        backoff_s = 0.1
        try:
            while not self.stop.is_set():
                try:
                    handled = await self.run_once()
                    idle = not handled and self.config.burst
                    if idle and await self.queue.depth(self.queue_name) == 0:
                        break
                    backoff_s = 0.1
                except QueueUnavailable as exc:
                    log.warning("queue unavailable, retrying in %.1f s: %s", backoff_s, exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), backoff_s)
                    backoff_s = min(5.0, backoff_s * 2)
                    continue
                if self.stats.abandoned:
                    break
        finally:
            self._executor.shutdown(wait=not self.stats.abandoned, cancel_futures=True)
        return self.stats

    async def _claim(self, n: int, wait_ms: float) -> list[Claim]:
        c = self.config
        return await self.queue.claim(
            self.queue_name, n, wait_ms=wait_ms, lease_ms=c.lease_ms, worker_id=c.worker_id
        )

    async def run_once(self) -> int:
        """Claim and handle one batch; returns the number of jobs claimed."""
        c = self.config
        claims = await self._claim(c.max_batch_size, c.idle_wait_ms)
        if not claims:
            return 0
        if len(claims) < c.max_batch_size and c.batch_timeout_ms > 0:
            # Linger (as a Kafka producer's linger.ms): a partial batch waits out its window
            # once, then takes what arrived in one more claim. One claim per window, not
            # one per arrival: each claim is a round trip that also wakes the queue server,
            # the worker's main cost with a fast model. A full first claim runs at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), c.batch_timeout_ms / 1000)
            if not self.stop.is_set():
                try:
                    claims.extend(await self._claim(c.max_batch_size - len(claims), 0))
                except QueueUnavailable as exc:  # run what is held; the loop backs off next
                    log.warning("could not top up the batch: %s", exc)
        self.stats.batches += 1
        self.stats.claimed += len(claims)
        if self.observe_wait is not None:
            for claim in claims:
                job = claim.job
                started = job.started_at if job.started_at is not None else job.queued_at
                self.observe_wait(max(0.0, started - job.queued_at))
        await self._handle(claims)
        return len(claims)

    async def _handle(self, claims: list[Claim]) -> None:
        valid: list[Claim] = []
        items: list[Any] = []
        for claim in claims:
            try:
                items.append(
                    self._adapter.validate_python(claim.job.input)
                    if self._adapter is not None
                    else claim.job.input
                )
                valid.append(claim)
            except Exception as exc:  # pydantic.ValidationError: not worth a retry
                error = JobError("InvalidInput", str(exc))
                await self._fail(claim, error, retryable=False)
        if not valid:
            return
        heartbeats = asyncio.create_task(self._heartbeat(valid))
        try:
            outcomes = await self._predict(items)
        finally:
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
        if outcomes is None:  # grace period over, the batch still running: hand the jobs back
            await self._give_back_abandoned(valid)
            return
        results: list[tuple[Claim, Any]] = []
        for claim, outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, ItemFailure):
                error = JobError(outcome.error_type, outcome.message)
                await self._fail(claim, error, retryable=True)
                continue
            try:
                results.append((claim, to_jsonable(outcome)))
            except (TypeError, ValueError) as exc:
                await self._fail(claim, JobError(type(exc).__name__, str(exc)), retryable=False)
        if results:
            await self._complete(results)

    async def _give_back_abandoned(self, claims: list[Claim]) -> None:
        """The batch ran (and runs on in its abandoned thread): not a ``release``, which
        gives back an attempt that never started. A retryable failure keeps the attempt, so
        a job that outlives every grace period ends dead-lettered instead of returning
        forever."""
        error = JobError(
            "WorkerStopped",
            f"the worker stopped while the batch was running ({self.config.grace_s:g} s grace "
            "period over)",
        )
        outcomes = await asyncio.gather(
            *(self.queue.fail(cl.job.id, cl.token, error, retryable=True) for cl in claims),
            return_exceptions=True,
        )
        self.stats.released += sum(1 for r in outcomes if r is JobStatus.QUEUED)
        self.stats.dead += sum(1 for r in outcomes if r is JobStatus.DEAD)

    async def _predict(self, items: list[Any]) -> Sequence[Any] | None:
        loop = asyncio.get_running_loop()
        running: asyncio.Future[list[Any]] = loop.run_in_executor(
            self._executor, run_isolated, self.model.predict, items
        )
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                log.info("stopping: in-flight batch has %.1f s to finish", self.config.grace_s)
                done, _ = await asyncio.wait({running}, timeout=self.config.grace_s)
                if not done:
                    self.stats.abandoned = True
                    return None
            return running.result()
        finally:
            stopping.cancel()

    async def _complete(self, results: list[tuple[Claim, Any]]) -> None:
        try:
            oks = await self.queue.complete_many(
                [(claim.job.id, claim.token, result) for claim, result in results]
            )
        except QueueUnavailable as exc:
            # The leases will expire and other attempts will run: at-least-once.
            log.warning("could not store %d results: %s", len(results), exc)
            return
        for (claim, _), ok in zip(results, oks, strict=True):
            if ok:
                self.stats.succeeded += 1
            else:
                self.stats.lost += 1
                log.info("lease of %s was lost; result discarded", claim.job.id)

    async def _fail(self, claim: Claim, error: JobError, *, retryable: bool) -> None:
        try:
            status = await self.queue.fail(claim.job.id, claim.token, error, retryable=retryable)
        except QueueUnavailable as exc:
            log.warning("could not record the failure of %s: %s", claim.job.id, exc)
            return
        if status is None:
            self.stats.lost += 1
        elif status is JobStatus.QUEUED:
            self.stats.retried += 1
        elif status is JobStatus.DEAD:
            self.stats.dead += 1
            log.warning("job %s dead-lettered: %s: %s", claim.job.id, error.type, error.message)
        else:
            self.stats.failed += 1

    async def _heartbeat(self, claims: list[Claim]) -> None:
        live = list(claims)
        while live:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            results = await asyncio.gather(
                *(self.queue.heartbeat(cl.job.id, cl.token, self.config.lease_ms) for cl in live),
                return_exceptions=True,
            )
            # Keep renewing on transient errors; stop renewing a lease that is lost.
            live = [cl for cl, ok in zip(live, results, strict=True) if ok is not False]


def build_config(
    cls: type[Model[Any, Any]],
    *,
    max_batch_size: int | None = None,
    batch_timeout_ms: float | None = None,
    **overrides: Any,
) -> WorkerConfig:
    """Worker settings: explicit values, else the model's class defaults, else ours."""
    if batch_timeout_ms is None:
        batch_timeout_ms = cls.batch_timeout_ms
    return WorkerConfig(
        max_batch_size=max_batch_size or cls.max_batch_size or _DEFAULT_BATCH,
        batch_timeout_ms=batch_timeout_ms if batch_timeout_ms is not None else 10.0,
        **{k: v for k, v in overrides.items() if v is not None},
    )


async def run_worker_async(
    target: str,
    queue: str | QueueBackend,
    *,
    max_batch_size: int | None = None,
    batch_timeout_ms: float | None = None,
    lease_ms: float | None = None,
    idle_wait_ms: float | None = None,
    grace_s: float | None = None,
    burst: bool = False,
    worker_id: str | None = None,
    model_options: dict[str, Any] | None = None,
    queue_name: str | None = None,
    stop: asyncio.Event | None = None,
    metrics_port: int | None = None,
) -> WorkerStats:
    """Load ``target`` (``MODULE:CLASS``, ``embed``, ``classify``) and serve its queue
    (named after the model's ``name`` unless ``queue_name`` says otherwise)."""
    cls = load_model_class(target)
    config = build_config(
        cls,
        max_batch_size=max_batch_size,
        batch_timeout_ms=batch_timeout_ms,
        lease_ms=lease_ms,
        idle_wait_ms=idle_wait_ms,
        grace_s=grace_s,
        burst=burst,
        worker_id=worker_id,
    )
    model = cls(**(model_options or {}))
    await asyncio.to_thread(model.load)
    backend = from_url(queue) if isinstance(queue, str) else queue
    observe_wait, metrics_server = None, None
    if metrics_port is not None:
        observe_wait, metrics_server = serve_metrics(metrics_port)
    worker = Worker(model, backend, config, queue_name=queue_name, observe_wait=observe_wait)
    if stop is not None:
        worker.stop = stop
    log.info("worker %s serving queue %r from %s", config.worker_id, worker.queue_name, backend)
    try:
        stats = await worker.run()
    finally:
        if isinstance(queue, str):
            await backend.close()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
    log.info("worker %s stopped: %s", config.worker_id, stats.summary())
    return stats


def serve_metrics(port: int) -> tuple[Callable[[float], None], Any]:
    """Serve this worker's Prometheus metrics on ``port`` (0: any free port, logged) in a
    thread; returns the queue-wait histogram's ``observe`` and the HTTP server (which has
    ``server_port``, ``shutdown()`` and ``server_close()``)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from tenfold.autoscale.metrics import queue_wait_histogram

    registry = CollectorRegistry()
    histogram = queue_wait_histogram(registry)
    server, _ = start_http_server(port, registry=registry)
    log.info("worker metrics on :%d/metrics", server.server_port)
    return histogram.observe, server


def run_worker(target: str, queue_url: str, **kwargs: Any) -> WorkerStats:
    """Blocking entry point: like :func:`run_worker_async`, stopping cleanly on SIGTERM/SIGINT."""

    async def main() -> WorkerStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_worker_async(target, queue_url, stop=stop, **kwargs)

    # uvloop (installed with uvicorn[standard], and what the API server runs on) when
    # present: its socket I/O costs the worker's loop less CPU per batch than asyncio's.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())
