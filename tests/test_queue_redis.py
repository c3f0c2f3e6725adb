"""Redis-specific behaviour the contract suite cannot see: stream hygiene and
NOGROUP recovery (real Redis at 127.0.0.1:6379, unique prefix per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from queue_helpers import REDIS_URL, delete_prefix, unique_prefix
from tenfold.queue import JobStatus, from_url
from tenfold.queue.redis_streams import GROUP, RedisQueue

pytestmark = pytest.mark.redis


@pytest.fixture
async def rq() -> AsyncIterator[RedisQueue]:
    prefix = unique_prefix()
    q = from_url(f"{REDIS_URL}?prefix={prefix}")
    assert isinstance(q, RedisQueue)
    yield q
    await q.close()
    delete_prefix(prefix)


def raw(rq: RedisQueue) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(REDIS_URL, decode_responses=True)


async def test_finished_entries_are_acked_and_deleted(rq: RedisQueue) -> None:
    r = raw(rq)
    stream = f"{rq.prefix}:stream:m"
    jobs = await rq.enqueue_many("m", list(range(5)))
    assert await r.xlen(stream) == 5
    claims = await rq.claim("m", 5, wait_ms=0, lease_ms=5000, worker_id="w")
    pending = await r.xpending(stream, GROUP)
    assert pending["pending"] == 5
    for c in claims:
        assert await rq.complete(c.job.id, c.token, c.job.input)
    assert await r.xlen(stream) == 0
    assert (await r.xpending(stream, GROUP))["pending"] == 0
    # no MAXLEN anywhere: nothing was trimmed, every job is accounted for
    assert {j.id for j in jobs} == {c.job.id for c in claims}
    await r.aclose()


async def test_lost_consumer_group_is_recreated(rq: RedisQueue) -> None:
    r = raw(rq)
    stream = f"{rq.prefix}:stream:m"
    a = await rq.enqueue("m", "a")
    [c] = await rq.claim("m", 1, wait_ms=0, lease_ms=5000, worker_id="w")
    b = await rq.enqueue("m", "b")
    # As after a Redis restart without persistence of the group: NOGROUP on the next claim.
    await r.xgroup_destroy(stream, GROUP)
    claims = await rq.claim("m", 5, wait_ms=0, lease_ms=5000, worker_id="w")
    # b is delivered; a's entry is re-delivered too but a is running, so it is dropped.
    assert [x.job.id for x in claims] == [b.id]
    assert await rq.complete(a.id, c.token, "a done")
    got = await rq.get(a.id)
    assert got is not None and got.status is JobStatus.SUCCEEDED
    await r.aclose()


async def test_heartbeat_renews_idle_time_without_counting_a_delivery(rq: RedisQueue) -> None:
    import asyncio

    r = raw(rq)
    stream = f"{rq.prefix}:stream:m"
    job = await rq.enqueue("m", 1)
    [c] = await rq.claim("m", 1, wait_ms=0, lease_ms=5000, worker_id="w")
    await asyncio.sleep(0.3)
    [before] = await r.xpending_range(stream, GROUP, "-", "+", 10)
    assert before["time_since_delivered"] >= 250
    assert await rq.heartbeat(job.id, c.token, 5000)
    [after] = await r.xpending_range(stream, GROUP, "-", "+", 10)
    assert after["time_since_delivered"] < 200
    assert after["times_delivered"] == before["times_delivered"] == 1
    await r.aclose()
