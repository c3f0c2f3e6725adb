"""Redis answers that mean "not now" (a demoted primary's READONLY, a full Redis's OOM) are
QueueUnavailable (503, the worker backs off), on every path, pipelined ones included; a bug
of ours (a script called wrongly) stays an error. Each test runs its own redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.exceptions as rexc

from queue_helpers import RedisServer, free_port, own_redis
from queue_models import Echo
from tenfold.errors import QueueUnavailable
from tenfold.queue import JobStatus
from tenfold.queue.redis_streams import RedisQueue
from tenfold.queue.worker import Worker, WorkerConfig

pytestmark = pytest.mark.redis


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with own_redis(durable=True) as s:  # durable: noeviction, what a queue Redis runs with
        yield s


def _admin(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


async def _wait_done(q: RedisQueue, job_ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = [await q.get(i) for i in job_ids]
        if all(j is not None and j.status is JobStatus.SUCCEEDED for j in jobs):
            return
        await asyncio.sleep(0.05)  # a real worker task on a real server: no clock to fake
    raise AssertionError("the worker did not finish the jobs")


async def test_a_demoted_primary_is_unavailable_and_the_worker_backs_off(
    server: RedisServer,
) -> None:
    q = RedisQueue(server.url, prefix="t")
    admin = _admin(server)
    try:
        jobs = await q.enqueue_many("echo", [1, 2])
        [held] = await q.claim("echo", 1, wait_ms=0, lease_ms=30_000, worker_id="w")
        # A failover demotes it: a replica (of a primary that is not there) is read-only.
        admin.replicaof("127.0.0.1", free_port())
        with pytest.raises(QueueUnavailable, match="ReadOnlyError"):
            await q.enqueue("echo", 3)
        with pytest.raises(QueueUnavailable):
            await q.enqueue_many("echo", [3])  # pipelined
        with pytest.raises(QueueUnavailable):
            await q.complete_many([(held.job.id, held.token, "x")])  # pipelined
        with pytest.raises(QueueUnavailable):
            await q.claim("echo", 1, wait_ms=0, lease_ms=1000, worker_id="w")
        assert await q.depth("echo") == 1  # reads still work

        model = Echo()
        model.load()
        worker = Worker(model, q, WorkerConfig(idle_wait_ms=50, lease_ms=30_000))
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)
        assert not running.done()  # backing off, not crashed
        admin.replicaof("NO", "ONE")  # promoted again: the worker carries on
        assert await q.complete(held.job.id, held.token, [held.job.input] * 2)
        await _wait_done(q, [j.id for j in jobs], timeout_s=10)
        worker.stop.set()
        stats = await asyncio.wait_for(running, 5)
        assert stats.succeeded == 1
    finally:
        admin.close()
        await q.close()


async def test_a_full_redis_refuses_submissions_as_unavailable(server: RedisServer) -> None:
    q = RedisQueue(server.url, prefix="t")
    admin = _admin(server)
    try:
        job = await q.enqueue("echo", 1)
        admin.config_set("maxmemory", 1)  # full, and noeviction: writes answer OOM
        with pytest.raises(QueueUnavailable, match="OutOfMemoryError"):
            await q.enqueue("echo", 2)
        with pytest.raises(QueueUnavailable):
            await q.enqueue_many("echo", [2, 3])  # pipelined
        with pytest.raises(QueueUnavailable):
            await q.enqueue_and_wait("echo", 2, wait_s=1)
        model = Echo()
        model.load()
        worker = Worker(model, q, WorkerConfig(idle_wait_ms=50, lease_ms=5000))
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)
        assert not running.done()  # its first claim creates the group: OOM, backing off
        admin.config_set("maxmemory", 0)  # room again: the worker carries on
        await _wait_done(q, [job.id], timeout_s=10)
        worker.stop.set()
        assert (await asyncio.wait_for(running, 5)).succeeded == 1
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
        await q.close()


async def test_a_script_called_wrongly_is_still_an_error(server: RedisServer) -> None:
    q = RedisQueue(server.url, prefix="t")
    try:
        with pytest.raises(rexc.ResponseError) as raised:
            await q._script("HEARTBEAT")  # no job id, no token: a bug of ours, not a 503
        assert not isinstance(raised.value, QueueUnavailable)
        with pytest.raises(rexc.ResponseError):
            await q._script_many("COMPLETE", [[]])
    finally:
        await q.close()
