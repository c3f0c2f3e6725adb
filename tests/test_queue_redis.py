"""Redis-specific behaviour the contract suite cannot see: stream hygiene and
NOGROUP recovery (real Redis at 127.0.0.1:6379, unique prefix per test)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from queue_helpers import REDIS_URL, delete_prefix, only_notifications_wake, unique_prefix
from tenfold.errors import QueueUnavailable
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
    import time

    r = raw(rq)
    stream = f"{rq.prefix}:stream:m"
    job = await rq.enqueue("m", 1)
    [c] = await rq.claim("m", 1, wait_ms=0, lease_ms=5000, worker_id="w")
    await asyncio.sleep(0.3)
    [before] = await r.xpending_range(stream, GROUP, "-", "+", 10)
    assert before["time_since_delivered"] >= 250
    sent = time.monotonic()
    assert await rq.heartbeat(job.id, c.token, 5000)
    [after] = await r.xpending_range(stream, GROUP, "-", "+", 10)
    since_sent_ms = (time.monotonic() - sent) * 1000
    # Idle no longer than since the heartbeat was sent (+ms rounding), however slow the
    # machine: not renewed, it would be the time since the claim, at least 300 ms more.
    assert after["time_since_delivered"] <= since_sent_ms + 5, (after, since_sent_ms)
    assert after["times_delivered"] == before["times_delivered"] == 1
    await r.aclose()


async def test_enqueue_and_wait_answers_with_the_accepted_job_when_redis_dies() -> None:
    """The job is accepted (AOF, fsync always) before Redis dies: the submitter gets the
    queued job, not an error that would make it submit again, and the job is still there
    after a restart."""
    import asyncio
    import time

    from redis_support import own_redis

    with own_redis(durable=True) as server:
        q = from_url(server.url)
        try:
            waiting = asyncio.create_task(q.enqueue_and_wait("m", "x", wait_s=60))
            deadline = time.monotonic() + 30
            while await _depth(server.url) != 1:  # until the enqueue has landed
                assert time.monotonic() < deadline and not waiting.done(), "never enqueued"
                await asyncio.sleep(0.01)  # a real server: no fake clock
            server.kill()
            job = await asyncio.wait_for(waiting, timeout=5)
            assert job.status is JobStatus.QUEUED and job.input == "x"
        finally:
            await q.close()
        server.start()
        again = from_url(server.url)
        try:
            kept = await again.get(job.id)
            assert kept is not None and kept.status is JobStatus.QUEUED
        finally:
            await again.close()


async def _depth(url: str) -> int:
    q = from_url(url)
    try:
        return await q.depth("m")
    finally:
        await q.close()


async def test_done_notification_carries_a_small_job_and_only_the_id_of_a_big_one(
    rq: RedisQueue,
) -> None:
    import asyncio
    import json

    from tenfold.queue.redis_lua import NOTIFY_MAX_BYTES

    r = raw(rq)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{rq.prefix}:done")
    small = await rq.enqueue("m", {"x": 1})
    big = await rq.enqueue("m", "y" * NOTIFY_MAX_BYTES)
    claims = {c.job.id: c for c in await rq.claim("m", 2, wait_ms=0, lease_ms=5000, worker_id="w")}
    assert await rq.complete(small.id, claims[small.id].token, {"label": "setosa"})
    assert await rq.complete(big.id, claims[big.id].token, "done")
    messages: list[str] = []
    while len(messages) < 2:
        m = await asyncio.wait_for(pubsub.get_message(timeout=5), 6)
        if m is not None:
            messages.append(m["data"])
    job_id, _, fields = messages[0].partition(" ")
    flat = json.loads(fields)
    got = await rq.get(small.id)
    assert job_id == small.id and got is not None
    assert dict(zip(flat[::2], flat[1::2], strict=True))["result"] == '{"label":"setosa"}'
    assert messages[1] == big.id  # too big to carry: waiters read it back
    await pubsub.aclose()
    await r.aclose()


async def test_waiters_get_the_stored_job_whether_carried_or_read_back(
    rq: RedisQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from tenfold.queue.redis_lua import NOTIFY_MAX_BYTES

    small = await rq.enqueue("m", {"x": 1})
    big = await rq.enqueue("m", "y" * NOTIFY_MAX_BYTES)
    only_notifications_wake(monkeypatch)  # not woken, they would wait the full 10 s
    waiting = [asyncio.create_task(rq.wait(j.id, 10)) for j in (small, big)]
    await asyncio.sleep(0.2)  # both waiters have read "queued" and are waiting
    for c in await rq.claim("m", 2, wait_ms=0, lease_ms=5000, worker_id="w"):
        assert await rq.complete(c.job.id, c.token, f"done {len(c.job.input)}")
    got = await asyncio.wait_for(asyncio.gather(*waiting), 5)  # woken, not the 10 s timeout
    assert got == [await rq.get(small.id), await rq.get(big.id)]
    assert [j.status for j in got] == [JobStatus.SUCCEEDED] * 2


async def test_a_late_notification_of_an_earlier_end_is_not_taken_as_the_answer(
    rq: RedisQueue,
) -> None:
    """A job died, was requeued, and a waiter then sees the old "dead" notification late:
    it must not answer "dead" for a job that is queued again."""
    import asyncio
    import json

    job = await rq.enqueue("m", 1)
    r = raw(rq)
    fields = await r.hgetall(f"{rq.prefix}:job:{job.id}")
    stale = {**fields, "status": "dead", "updated_at": repr(job.updated_at - 60)}
    waiting = asyncio.create_task(rq.wait(job.id, 0.6))
    await asyncio.sleep(0.2)
    flat = [x for kv in stale.items() for x in kv]
    await r.publish(f"{rq.prefix}:done", f"{job.id} {json.dumps(flat)}")
    got = await waiting
    assert got.status is JobStatus.QUEUED  # read back, not the stale "dead"
    await r.aclose()


async def test_batched_scripts_survive_a_script_flush() -> None:
    """enqueue_many and complete_many send EVALSHA without asking SCRIPT EXISTS first: after
    Redis drops its scripts (a restart, SCRIPT FLUSH) they load them and run exactly once."""
    import redis.asyncio as aioredis

    from redis_support import own_redis

    with own_redis(durable=False) as server:
        q = from_url(server.url)
        r = aioredis.Redis.from_url(server.url)
        try:
            await q.enqueue_many("m", [0])  # the scripts are known to Redis now
            await r.script_flush()
            jobs = await q.enqueue_many("m", [1, 2, 3])
            assert await q.depth("m") == 4  # each enqueued once, none twice
            claims = await q.claim("m", 4, wait_ms=0, lease_ms=5000, worker_id="w")
            await r.script_flush()
            oks = await q.complete_many([(c.job.id, c.token, c.job.input) for c in claims])
            assert oks == [True] * 4
            for job in jobs:
                done = await q.get(job.id)
                assert done is not None and done.status is JobStatus.SUCCEEDED
                assert done.result == job.input
            # Fenced as before: a second completion with the same token is refused.
            again = await q.complete_many([(claims[0].job.id, claims[0].token, "late")])
            assert again == [False]
        finally:
            await r.aclose()
            await q.close()


class _SteppingClock:
    """Each reading is ``step`` seconds after the previous one (time passing between the
    steps of one operation)."""

    def __init__(self, start: float, step: float) -> None:
        self.t, self.step = start, step

    def now(self) -> float:
        t, self.t = self.t, self.t + self.step
        return t


async def test_a_resubmission_as_the_earlier_job_expires_gets_that_job_not_a_phantom() -> None:
    """The enqueue script finds the earlier job of the key alive and returns it in the same
    atomic step; a read after the script could find it expired and answer with an id that
    was never stored."""
    from tenfold.clock import FakeClock
    from tenfold.queue import QueueConfig

    prefix = unique_prefix()
    url = f"{REDIS_URL}?prefix={prefix}"
    config = QueueConfig(result_ttl_s=10.0)
    setup = from_url(url, config=config, clock=FakeClock(start=1000.0))
    try:
        first = await setup.enqueue("m", 1, idempotency_key="k")
        [c] = await setup.claim("m", 1, wait_ms=0, lease_ms=5000, worker_id="w")
        assert await setup.complete(first.id, c.token, "done")  # expires at 1010.0
        # Readings: 1009.5 (the enqueue: alive), then 1010.5 (any read after it: gone).
        racing = from_url(url, config=config, clock=_SteppingClock(1009.5, 1.0))
        try:
            again = await racing.enqueue("m", 1, idempotency_key="k")
        finally:
            await racing.close()
        assert again.id == first.id and again.status is JobStatus.SUCCEEDED
        assert again.result == "done"
    finally:
        await setup.close()
        delete_prefix(prefix)


async def test_queued_jobs_survive_the_loss_of_their_stream(rq: RedisQueue) -> None:
    """The stream key is gone (evicted, deleted) while the job records survive: the claim that
    meets NOGROUP puts the queued jobs back on a new stream; a running job still completes."""
    r = raw(rq)
    a = await rq.enqueue("m", "a")
    [held] = await rq.claim("m", 1, wait_ms=0, lease_ms=5000, worker_id="w")
    b = await rq.enqueue("m", "b")
    assert await r.delete(f"{rq.prefix}:stream:m") == 1
    claims = await rq.claim("m", 5, wait_ms=0, lease_ms=5000, worker_id="w")
    assert [c.job.id for c in claims] == [b.id]
    assert await rq.claim("m", 5, wait_ms=0, lease_ms=5000, worker_id="w") == []  # once
    assert await rq.complete(a.id, held.token, "a done")
    assert await rq.complete(b.id, claims[0].token, "b done")
    for job in (a, b):
        got = await rq.get(job.id)
        assert got is not None and got.status is JobStatus.SUCCEEDED
    assert await rq.depth("m") == 0
    assert await r.xlen(f"{rq.prefix}:stream:m") == 0
    await r.aclose()


async def test_repair_scans_only_when_the_stream_lost_entries(rq: RedisQueue) -> None:
    """Every worker that meets NOGROUP runs the repair; once one has re-added the entries
    (or when only the group was lost), the others return at once without scanning."""
    r = raw(rq)
    for x in "abc":
        await rq.enqueue("m", x)
    assert await rq._script("REPAIR", "m") == 0  # stream intact: nothing to do
    assert await r.xlen(f"{rq.prefix}:stream:m") == 3
    assert await r.delete(f"{rq.prefix}:stream:m") == 1
    assert await rq._script("REPAIR", "m") == 3  # the first worker re-adds them
    assert await rq._script("REPAIR", "m") == 0  # the next finds them there
    assert await r.xlen(f"{rq.prefix}:stream:m") == 3
    await r.aclose()


async def test_wait_statistics_stay_bounded_without_anyone_reading_them() -> None:
    """Claims add per-second wait buckets; the claim itself drops those that left the stats
    window (nothing calls stats() here)."""
    from tenfold.clock import FakeClock
    from tenfold.queue import QueueConfig

    prefix = unique_prefix()
    clock = FakeClock(start=1000.0)
    q = RedisQueue(REDIS_URL, prefix=prefix, config=QueueConfig(stats_window_s=10.0), clock=clock)
    r = raw(q)
    try:
        for i in range(200):
            await q.enqueue("m", i)
            assert await q.claim("m", 1, wait_ms=0, lease_ms=5000, worker_id="w")
            clock.advance(1.0)
        assert await r.hlen(f"{prefix}:waits:m") <= 4 * (10 + 1) + 2
        in_window = {f"{second}:n" for second in range(1190, 1200)}
        assert in_window <= set(await r.hkeys(f"{prefix}:waits:m"))
        assert (await q.stats("m")).avg_wait_s == 0.0  # the window's buckets are still there
    finally:
        await r.aclose()
        await q.close()
        delete_prefix(prefix)


async def once_redis_answers(call: Any) -> Any:
    """``await call()``, again while it meets a stale pooled connection (each fails once)."""
    for _ in range(8):
        with contextlib.suppress(QueueUnavailable):
            return await call()
    raise AssertionError("the restarted Redis never answered")


async def test_a_waiter_is_woken_promptly_after_redis_restarts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The listener resubscribes after the restart (it used to stay dead until the next
    wait() began, leaving waiters to the re-check). A stale pooled connection may fail its
    first command after the restart once (QueueUnavailable), then works."""
    import asyncio
    import time

    from redis_support import own_redis
    from tenfold.queue import redis_streams

    monkeypatch.setattr(redis_streams, "_RECHECK_S", 30.0)  # only a notification wakes it
    with own_redis(durable=True) as server:
        api, worker = RedisQueue(server.url, prefix="t"), RedisQueue(server.url, prefix="t")
        try:
            job = await api.enqueue("m", 1)
            waiting = asyncio.create_task(api.wait(job.id, 20))
            await asyncio.sleep(0.2)  # waiting, subscribed
            server.kill()
            server.start()
            await asyncio.sleep(0.3)  # the listener notices and resubscribes
            got = await once_redis_answers(lambda: api.get(job.id))
            assert got is not None and got.status is JobStatus.QUEUED
            [c] = await once_redis_answers(
                lambda: worker.claim("m", 1, wait_ms=0, lease_ms=5000, worker_id="w")
            )
            assert await once_redis_answers(lambda: worker.complete(job.id, c.token, "done"))
            t0 = time.monotonic()
            done = await asyncio.wait_for(waiting, 5)
            assert done.status is JobStatus.SUCCEEDED
            assert time.monotonic() - t0 < 2.5  # a notification (the re-check is at 30 s)
        finally:
            await api.close()
            await worker.close()


async def test_a_completion_while_the_listener_is_down_wakes_its_waiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The notification is lost while the pub/sub connection is down: once resubscribed, the
    listener wakes every waiter to read its job again."""
    import asyncio
    import threading

    import redis

    from redis_support import own_redis
    from tenfold.queue import redis_streams

    monkeypatch.setattr(redis_streams, "_RECHECK_S", 30.0)  # only the listener wakes it
    with own_redis(durable=False) as server:
        api = RedisQueue(server.url, prefix="t")
        try:
            job = await api.enqueue("m", 1)
            [c] = await api.claim("m", 1, wait_ms=0, lease_ms=5000, worker_id="w")
            waiting = asyncio.create_task(api.wait(job.id, 20))
            await asyncio.sleep(0.2)  # waiting, subscribed

            async def complete() -> None:
                worker = RedisQueue(server.url, prefix="t")
                try:
                    assert await worker.complete(job.id, c.token, "done")
                finally:
                    await worker.close()

            # While this loop is blocked (its listener cannot react): the pub/sub connection
            # drops, and the job completes, its notification sent to nobody.
            admin = redis.Redis.from_url(server.url)
            try:
                assert admin.client_kill_filter(_type="pubsub") == 1
            finally:
                admin.close()
            thread = threading.Thread(target=asyncio.run, args=(complete(),))
            thread.start()
            thread.join()
            done = await asyncio.wait_for(waiting, 5)
            assert done.status is JobStatus.SUCCEEDED and done.result == "done"
        finally:
            await api.close()
