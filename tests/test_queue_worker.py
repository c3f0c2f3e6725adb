"""The queue worker in-process (real SQLite/Redis, tiny test models) and as a
real process for the SIGTERM behaviour."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from queue_helpers import REDIS_URL, delete_prefix, src_env, unique_prefix
from queue_models import POISON
from tenfold.model import Model
from tenfold.queue import JobStatus, QueueBackend, from_url
from tenfold.queue.jsonsafe import to_jsonable
from tenfold.queue.worker import Worker, WorkerConfig, run_worker_async


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    params = "max_attempts=3&retry_base_ms=20&retry_max_ms=50"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/q.db?{params}"
    else:
        prefix = unique_prefix()
        yield f"{REDIS_URL}?prefix={prefix}&{params}"
        delete_prefix(prefix)


async def test_worker_isolates_poison_and_invalid_inputs(url: str) -> None:
    q: QueueBackend = from_url(url)
    try:
        inputs: list[Any] = list(range(30))
        inputs[5] = "not a number"
        jobs = [await q.enqueue("echo", x) for x in inputs]
        stats = await run_worker_async(
            "queue_models:Echo", url, burst=True, idle_wait_ms=50, lease_ms=5000
        )
        assert stats.claimed >= 30 and stats.batches >= 2
        for job, x in zip(jobs, inputs, strict=True):
            done = await q.get(job.id)
            assert done is not None
            if x == POISON:
                assert done.status is JobStatus.DEAD and done.attempts == 3
                assert done.error is not None and done.error.type == "ValueError"
                assert done.error.message == f"cannot echo {POISON}"
            elif x == "not a number":
                assert done.status is JobStatus.FAILED and done.attempts == 1
                assert done.error is not None and done.error.type == "InvalidInput"
            else:
                assert done.status is JobStatus.SUCCEEDED, (x, done)
                assert done.result == [x, 2 * x] and done.attempts == 1
        assert (stats.succeeded, stats.dead, stats.failed, stats.retried) == (28, 1, 1, 2)
        assert (await q.stats("echo")).dead == 1
    finally:
        await q.close()


class _Batches(Model[int, int]):
    """Records the batches it is given."""

    name = "batches"
    input_model: ClassVar[Any] = int

    def load(self) -> None:
        self.seen: list[list[int]] = []

    def predict(self, batch: list[int]) -> list[int]:
        self.seen.append(list(batch))
        return batch


class _CountingClaims:
    """The real queue, counting claim calls."""

    def __init__(self, inner: QueueBackend) -> None:
        self.inner = inner
        self.claims = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        return await self.inner.claim(*args, **kwargs)


def _batching_worker(
    q: QueueBackend, batch_timeout_ms: float
) -> tuple[Worker, _Batches, _CountingClaims]:
    """A worker of batches of up to 4 over ``q``, its model, and its claim counter."""
    counted = _CountingClaims(q)
    model = _Batches()
    model.load()
    config = WorkerConfig(
        max_batch_size=4, batch_timeout_ms=batch_timeout_ms, idle_wait_ms=50, lease_ms=5000
    )
    return Worker(model, counted, config), model, counted  # type: ignore[arg-type]


async def test_a_partial_batch_lingers_once_and_a_full_one_runs_at_once(url: str) -> None:
    q: QueueBackend = from_url(url)
    # A 1 s window: the two arrivals below (0.1 s apart) land inside it on a busy machine,
    # and a full batch's run stays well under it.
    worker, model, counted = _batching_worker(q, batch_timeout_ms=1000)
    try:
        await q.enqueue("batches", 1)
        one = asyncio.create_task(worker.run_once())
        for x in (2, 3):  # arrivals during the window: no claim each, one at its end
            await asyncio.sleep(0.1)
            assert not one.done()
            await q.enqueue("batches", x)
        assert await one == 3
        assert counted.claims == 2
        await q.enqueue_many("batches", [4, 5, 6, 7, 8])
        t0 = time.monotonic()
        assert await worker.run_once() == 4  # full at the first claim: no lingering
        assert time.monotonic() - t0 < 0.5 and counted.claims == 3  # not the 1 s window
        assert await worker.run_once() == 1  # the rest, after one window
        assert model.seen == [[1, 2, 3], [4, 5, 6, 7], [8]]
        assert worker.stats.summary().startswith("3 batches, 8 jobs claimed (mean batch 2.7)")
    finally:
        await q.close()


async def test_stop_during_the_linger_runs_the_held_batch_and_claims_no_more(url: str) -> None:
    q: QueueBackend = from_url(url)
    worker, model, counted = _batching_worker(q, batch_timeout_ms=5000)
    try:
        held = await q.enqueue("batches", 1)
        one = asyncio.create_task(worker.run_once())
        await asyncio.sleep(0.2)
        later = await q.enqueue("batches", 2)
        t0 = time.monotonic()
        worker.stop.set()  # SIGTERM while lingering
        assert await one == 1
        assert time.monotonic() - t0 < 1.0  # not the 5 s window
        assert counted.claims == 1 and model.seen == [[1]]
        done, waiting = await q.get(held.id), await q.get(later.id)
        assert done is not None and done.status is JobStatus.SUCCEEDED
        assert waiting is not None and waiting.status is JobStatus.QUEUED  # left for others
    finally:
        await q.close()


async def test_heartbeats_keep_a_long_batch_leased(url: str) -> None:
    q: QueueBackend = from_url(url)
    try:
        job = await q.enqueue("slow", 2.5)
        worker = asyncio.create_task(
            run_worker_async("queue_models:Slow", url, burst=True, idle_wait_ms=50, lease_ms=1000)
        )
        await _wait_running(q, job.id)  # the worker has it (else the thief would take it)
        stolen = []
        while not worker.done():  # a thief keeps trying while the 2.5 s batch runs on 1 s leases
            stolen += await q.claim("slow", 1, wait_ms=0, lease_ms=400, worker_id="thief")
            await asyncio.sleep(0.1)
        stats = await worker
        assert stolen == []
        done = await q.get(job.id)
        assert done is not None and done.status is JobStatus.SUCCEEDED and done.attempts == 1
        assert stats.lost == 0
    finally:
        await q.close()


def test_outputs_become_json() -> None:
    from pydantic import BaseModel

    class P(BaseModel):
        a: int

    value = {"v": np.arange(3, dtype=np.float32), "s": np.int64(4), "p": P(a=1), "t": (1, 2)}
    assert to_jsonable(value) == {"v": [0.0, 1.0, 2.0], "s": 4, "p": {"a": 1}, "t": [1, 2]}
    with pytest.raises(TypeError):
        to_jsonable(object())
    with pytest.raises(ValueError):
        to_jsonable(float("inf"))


def test_worker_config_validates() -> None:
    with pytest.raises(ValueError):
        WorkerConfig(max_batch_size=0)
    with pytest.raises(ValueError):
        WorkerConfig(lease_ms=0)


def _spawn_worker(url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenfold.queue.cli",
                "worker",
                "queue_models:Slow",
                "--queue",
                url,
                "--idle-wait-ms",
                "100",
                *args,
            ],
            env=src_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _wait_running(q: QueueBackend, job_id: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = await q.get(job_id)
        if job is not None and job.status is JobStatus.RUNNING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never started the job")


@pytest.mark.slow
async def test_sigterm_finishes_the_batch_within_grace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    q = from_url(url)
    try:
        job = await q.enqueue("slow", 1.0)
        proc = _spawn_worker(url, tmp_path / "worker.log", "--grace-s", "10")
        await _wait_running(q, job.id)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 15)
        assert code == 0, (tmp_path / "worker.log").read_text()
        assert time.monotonic() - t0 < 5
        done = await q.get(job.id)
        assert done is not None and done.status is JobStatus.SUCCEEDED and done.result == 1.0
    finally:
        await q.close()


@pytest.mark.slow
async def test_sigterm_releases_the_batch_after_grace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    q = from_url(url)
    try:
        job = await q.enqueue("slow", 30.0)
        proc = _spawn_worker(url, tmp_path / "worker.log", "--grace-s", "0.5")
        await _wait_running(q, job.id)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 15)
        assert code == 0, (tmp_path / "worker.log").read_text()
        assert time.monotonic() - t0 < 5  # did not wait for the 30 s batch
        back = await q.get(job.id)
        # back in the queue; the batch ran, so the attempt counts
        assert back is not None and back.status is JobStatus.QUEUED and back.attempts == 1
        assert back.error is not None and back.error.type == "WorkerStopped"
    finally:
        await q.close()


async def test_the_worker_observes_each_claimed_jobs_queue_wait(tmp_path: Path) -> None:
    """What ``tenfold worker --metrics-port`` exports as tenfold_queue_wait_seconds."""
    from tenfold.clock import FakeClock
    from tenfold.queue.sqlite import SqliteQueue

    clock = FakeClock(1_000.0)
    q = SqliteQueue(tmp_path / "q.db", clock=clock)
    waits: list[float] = []
    model = _Batches()
    model.load()
    worker = Worker(
        model,
        q,
        WorkerConfig(max_batch_size=4, batch_timeout_ms=0, idle_wait_ms=0),
        observe_wait=waits.append,
    )
    try:
        await q.enqueue("batches", 1)
        clock.advance(2.0)
        await q.enqueue("batches", 2)
        clock.advance(0.5)
        assert await worker.run_once() == 2
    finally:
        await q.close()
    assert sorted(waits) == [0.5, 2.5]


async def test_a_batch_that_outlives_the_grace_period_counts_its_attempt(url: str) -> None:
    """Stopped mid-batch, past grace: the jobs go back to the queue, but the batch ran (and
    runs on in its abandoned thread), so the attempt is not given back: a job that outlives
    every grace period is dead-lettered in the end instead of returning forever."""
    from queue_models import Slow

    q: QueueBackend = from_url(url)  # max_attempts=3
    model = Slow()
    model.load()
    try:
        job = await q.enqueue("slow", 0.6)
        for attempt in (1, 2, 3):
            worker = Worker(model, q, WorkerConfig(idle_wait_ms=100, grace_s=0.05))
            running = asyncio.create_task(worker.run())
            while (got := await q.get(job.id)) is None or got.status is not JobStatus.RUNNING:
                await asyncio.sleep(0.01)  # a real thread runs the batch: no clock to fake
            worker.stop.set()
            stats = await asyncio.wait_for(running, 5)
            assert stats.abandoned
            back = await q.get(job.id)
            assert back is not None and back.attempts == attempt
            assert back.error is not None and back.error.type == "WorkerStopped"
            if attempt < 3:
                assert back.status is JobStatus.QUEUED and stats.released == 1
        assert back is not None and back.status is JobStatus.DEAD and stats.dead == 1
    finally:
        await q.close()


async def test_a_taken_over_jobs_wait_counts_from_its_lease_expiry(url: str) -> None:
    """The histogram sees the time since the dead worker's lease ran out, not since enqueue."""
    from tenfold.clock import FakeClock

    clock = FakeClock(1_000.0)
    q: QueueBackend = from_url(url, clock=clock)
    waits: list[float] = []
    model = _Batches()
    model.load()
    worker = Worker(
        model, q, WorkerConfig(batch_timeout_ms=0, idle_wait_ms=0), observe_wait=waits.append
    )
    try:
        await q.enqueue("batches", 1)
        assert await q.claim("batches", 1, wait_ms=0, lease_ms=60_000, worker_id="dies")
        clock.advance(125.0)
        assert await worker.run_once() == 1
    finally:
        await q.close()
    assert waits == [pytest.approx(65.0)]


def test_worker_metrics_port_serves_the_wait_histogram() -> None:
    import urllib.request

    from tenfold.queue.worker import serve_metrics

    observe, server = serve_metrics(0)
    try:
        observe(3.0)
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url) as response:
            body = response.read()
    finally:
        server.shutdown()
        server.server_close()
    assert b"tenfold_queue_wait_seconds_count 1.0" in body
    assert b'tenfold_queue_wait_seconds_bucket{le="5.0"} 1.0' in body
