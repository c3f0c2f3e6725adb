"""Jepsen-style reliability checks with real processes: record every
acknowledged submission, inject faults (kill -9 workers, kill -9 Redis), then
check nothing was lost and count duplicate executions."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import time
from pathlib import Path

import pytest

from queue_helpers import REDIS_URL, delete_prefix, own_redis, src_env, unique_prefix
from queue_models import POISON
from tenfold.errors import QueueUnavailable
from tenfold.queue import JobStatus, QueueBackend, from_url
from tenfold.queue.pool import LocalWorkerPool

pytestmark = pytest.mark.slow

N_JOBS = 3000  # inputs 0..N-1; POISON (13) raises in the model every time
BATCH = 16
LEASE_MS = 1500
# Short backoff keeps the run short; 5 attempts as by default.
RETRY = "max_attempts=5&retry_base_ms=100&retry_max_ms=400"


def _pool(url: str, log: Path, processes: int = 3) -> LocalWorkerPool:
    env = src_env()
    env["ECHO_EXEC_LOG"] = str(log)
    # ~100 jobs/s per worker: 3000 jobs keep 3 workers busy for 9+ s, so 8+ kill rounds
    # even on a fast machine (at 0.05 s a fast day gave only 3). Killing faster than once
    # a second instead lets a job lose its lease 5 times and be dead-lettered.
    env["ECHO_SLEEP_S"] = "0.15"
    return LocalWorkerPool(
        "queue_models:Echo",
        url,
        processes=processes,
        max_batch_size=BATCH,
        lease_ms=LEASE_MS,
        grace_s=1.0,
        extra_args=["--idle-wait-ms", "200", "--log-level", "WARNING"],
        env=env,
    )


async def _submit(q: QueueBackend, n: int, acked: dict[str, int], chunk: int = 100) -> None:
    """Submit ``n`` jobs in chunks while workers run; record only acknowledged ones."""
    i = 0
    while i < n:
        values = list(range(i, min(n, i + chunk)))
        try:
            jobs = await q.enqueue_many("echo", values)
        except QueueUnavailable:
            await asyncio.sleep(0.1)  # not acknowledged: retry the same values
            continue
        acked.update({j.id: v for j, v in zip(jobs, values, strict=True)})
        i += chunk
        await asyncio.sleep(0.02)


async def _until_drained(q: QueueBackend, acked: dict[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    s = None
    while time.monotonic() < deadline:
        try:
            s = await q.stats("echo")
            if s.queued == 0 and s.leased == 0 and s.dead == 1 and len(acked) == N_JOBS:
                return
        except QueueUnavailable:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"not drained after {timeout_s} s: {s}, {len(acked)} acknowledged")


async def _check(q: QueueBackend, acked: dict[str, int], log: Path) -> tuple[int, int]:
    """Every acknowledged job succeeded with its one result, except the poison input,
    dead after max_attempts with its error; returns (extra executions, extra claims)."""
    extra_claims = 0
    for job_id, value in acked.items():
        job = await q.get(job_id)
        assert job is not None, f"acknowledged job {job_id} lost"
        if value == POISON:
            assert job.status is JobStatus.DEAD and job.attempts == 5, job
            assert job.error is not None and job.error.message == f"cannot echo {POISON}"
            continue
        assert job.status is JobStatus.SUCCEEDED, job
        assert job.result == [value, 2 * value]
        extra_claims += job.attempts - 1
    executions = collections.Counter(int(x) for x in log.read_text().split())
    assert set(executions) == set(range(N_JOBS)) - {POISON}, "some inputs never ran"
    return sum(executions.values()) - (N_JOBS - 1), extra_claims


async def _kill_workers_while_running(url: str, tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    q = from_url(url)
    pool = _pool(url, log)
    pool.start()
    acked: dict[str, int] = {}
    rng = random.Random(4)
    kills = 0
    try:
        submitter = asyncio.create_task(_submit(q, N_JOBS, acked))
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            s = await q.stats("echo")
            if submitter.done() and s.queued == 0 and s.leased == 0:
                break
            if s.queued + s.leased > BATCH:  # kill only while work is in flight
                victim = rng.choice(pool.processes)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                kills += 1
                pool.restart_exited()
        await submitter
        await _until_drained(q, acked, 30)
        extra_runs, extra_claims = await _check(q, acked, log)
        assert kills >= 5, f"only {kills} kills: the run was too short to test anything"
        # A killed worker can lose at most its in-flight batch (plus one being topped up).
        assert extra_runs <= kills * BATCH, (extra_runs, kills)
        assert extra_claims <= kills * 2 * BATCH, (extra_claims, kills)
        print(f"kills={kills} extra_executions={extra_runs} extra_claims={extra_claims}")
    finally:
        pool.stop(grace_s=2)
        await q.close()


async def test_kill9_workers_sqlite(tmp_path: Path) -> None:
    await _kill_workers_while_running(f"sqlite:///{tmp_path}/q.db?{RETRY}", tmp_path)


@pytest.mark.redis
async def test_kill9_workers_redis(tmp_path: Path) -> None:
    prefix = unique_prefix()
    try:
        await _kill_workers_while_running(f"{REDIS_URL}?prefix={prefix}&{RETRY}", tmp_path)
    finally:
        delete_prefix(prefix)


@pytest.mark.redis
async def test_redis_restart_loses_no_acknowledged_submission(tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    with own_redis() as server:
        url = f"{server.url}?prefix=restart&{RETRY}"
        q = from_url(url)
        pool = _pool(url, log, processes=2)
        pool.start()
        acked: dict[str, int] = {}
        try:
            submitter = asyncio.create_task(_submit(q, N_JOBS, acked))
            while len(acked) < N_JOBS // 3:
                await asyncio.sleep(0.05)
            server.kill()  # kill -9: only fsync'ed (acknowledged) writes survive
            await asyncio.sleep(1.0)
            server.start()  # same port, same AOF
            await submitter
            await _until_drained(q, acked, 40)
            await _check(q, acked, log)
            assert all(p.poll() is None for p in pool.processes), "a worker died with Redis"
        finally:
            pool.stop(grace_s=2)
            await q.close()
