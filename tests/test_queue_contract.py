"""One contract suite for every queue backend: SQLite (a tmp file) and Redis
(the real server at 127.0.0.1:6379, a unique key prefix per test).

Time is a FakeClock: leases, retry backoff and result expiry are driven by
``clock.advance``; only the wake-up tests measure real time.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from queue_helpers import REDIS_URL, delete_prefix, only_notifications_wake, unique_prefix
from tenfold.clock import FakeClock
from tenfold.errors import JobNotFound, QueueFull
from tenfold.queue import JobError, JobStatus, QueueBackend, QueueConfig, RetryPolicy, from_url

T0 = 1_700_000_000.0
CONFIG = QueueConfig(
    retry=RetryPolicy(max_attempts=3, base_delay_s=2.0, max_delay_s=60.0), result_ttl_s=600.0
)

Factory = Callable[[], QueueBackend]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_queue(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Factory]:
    """Builds backend objects sharing one store (like separate processes would)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/queue.db"
        prefix = None
    else:
        prefix = unique_prefix()
        url = f"{REDIS_URL}?prefix={prefix}"
    made: list[QueueBackend] = []

    def factory() -> QueueBackend:
        q = from_url(url, config=CONFIG, clock=clock, rng=random.Random(7))
        made.append(q)
        return q

    yield factory
    for q in made:
        await q.close()
    if prefix is not None:
        delete_prefix(prefix)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=T0)


@pytest.fixture
async def q(make_queue: Factory) -> QueueBackend:
    return make_queue()


async def claim(q: QueueBackend, n: int = 10, *, lease_ms: float = 10_000, worker: str = "w1"):  # type: ignore[no-untyped-def]
    return await q.claim("m", n, wait_ms=0, lease_ms=lease_ms, worker_id=worker)


async def test_enqueue_then_get_round_trips_json(q: QueueBackend, clock: FakeClock) -> None:
    payload = {"text": "héllo", "n": [1, 2.5, None, True]}
    job = await q.enqueue("m", payload)
    assert uuid.UUID(job.id).version == 7
    assert job.status is JobStatus.QUEUED and job.attempts == 0
    assert job.created_at == job.queued_at == T0
    got = await q.get(job.id)
    assert got == job
    assert await q.get(str(uuid.uuid4())) is None


async def test_payloads_must_be_json(q: QueueBackend) -> None:
    with pytest.raises(TypeError):
        await q.enqueue("m", object())
    with pytest.raises(ValueError):
        await q.enqueue("m", float("nan"))
    assert await q.depth("m") == 0


async def test_idempotency_key_maps_to_one_job(q: QueueBackend) -> None:
    a = await q.enqueue("m", 1, idempotency_key="k")
    b = await q.enqueue("m", 2, idempotency_key="k")
    c = await q.enqueue("m", 1, idempotency_key="other")
    d = await q.enqueue("m2", 1, idempotency_key="k")
    assert b.id == a.id and b.input == 1
    assert len({a.id, c.id, d.id}) == 3
    assert await q.depth("m") == 2


async def test_concurrent_enqueues_each_get_their_own_answer(q: QueueBackend) -> None:
    """Enqueues made together (Redis sends them in shared round trips) answer as if alone:
    a repeated idempotency key names one job, a full queue refuses only the extra ones."""
    calls = [q.enqueue("m", i, idempotency_key=f"k{i % 5}", max_depth=8) for i in range(12)]
    calls += [q.enqueue("m", 100 + i, max_depth=8) for i in range(6)]
    trips = q._enqueues.round_trips  # type: ignore[attr-defined]
    out = await asyncio.gather(*calls, return_exceptions=True)
    # shared: the first alone, the rest together (one transaction, or one pipeline)
    assert q._enqueues.round_trips - trips == 2  # type: ignore[attr-defined]
    keyed, plain = out[:12], out[12:]
    jobs = [j for j in keyed if not isinstance(j, BaseException)]
    assert len(jobs) == 12, keyed
    for k in range(5):
        same = {j.id for j in jobs if j.idempotency_key == f"k{k}"}
        assert len(same) == 1  # one job per key, whoever came first
        (job,) = [j for j in jobs if j.id in same][:1]
        assert job.input % 5 == k  # type: ignore[operator]
    # 5 keyed jobs are queued, so 3 of the 6 plain ones fit under max_depth 8
    refused = [e for e in plain if isinstance(e, BaseException)]
    assert len(refused) == 3 and all(isinstance(e, QueueFull) for e in refused), plain
    assert await q.depth("m") == 8


async def test_max_depth_refuses_a_new_job_atomically(q: QueueBackend) -> None:
    a = await q.enqueue("m", 1, idempotency_key="k", max_depth=2)
    await q.enqueue("m", 2, max_depth=2)
    with pytest.raises(QueueFull, match="2 or more"):
        await q.enqueue("m", 3, max_depth=2)
    assert await q.depth("m") == 2  # nothing was added
    # A retry of an existing job is answered, not refused: it adds nothing.
    assert (await q.enqueue("m", 1, idempotency_key="k", max_depth=2)).id == a.id
    await q.enqueue("other", 1, max_depth=2)  # the limit is per model queue
    (claimed,) = await claim(q, 1)  # leased jobs are not queued: room again
    await q.enqueue("m", 4, max_depth=2)
    assert await q.depth("m") == 2 and claimed.job.input == 1


async def test_claim_takes_oldest_first_up_to_n(q: QueueBackend, clock: FakeClock) -> None:
    jobs = []
    for i in range(5):
        jobs.append(await q.enqueue("m", i))
        clock.advance(0.01)
    first = await claim(q, 3)
    assert [c.job.input for c in first] == [0, 1, 2]
    assert all(c.job.status is JobStatus.RUNNING and c.job.attempts == 1 for c in first)
    assert first[0].lease_expires_at == pytest.approx(clock.now() + 10.0)
    second = await claim(q, 3)
    assert [c.job.input for c in second] == [3, 4]
    assert await claim(q, 3) == []
    assert await q.claim("other-model", 3, wait_ms=0, lease_ms=1000, worker_id="w") == []


async def test_complete_stores_the_result_once(q: QueueBackend) -> None:
    job = await q.enqueue("m", "x")
    [c] = await claim(q)
    assert await q.complete(job.id, c.token, {"y": 1})
    assert not await q.complete(job.id, c.token, {"y": 2})
    assert await q.fail(job.id, c.token, JobError("E", "late")) is None
    done = await q.get(job.id)
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED and done.result == {"y": 1}
    assert done.finished_at is not None
    assert not await q.complete(job.id, "forged-token", 3)


async def test_expired_lease_rejects_the_stale_worker(
    make_queue: Factory, clock: FakeClock
) -> None:
    qa, qb = make_queue(), make_queue()  # two workers, as two processes would be
    job = await qa.enqueue("m", "slow")
    [stale] = await claim(qa, lease_ms=1000, worker="a")
    clock.advance(1.5)  # worker a stalls past its lease
    [fresh] = await claim(qb, lease_ms=1000, worker="b")
    assert fresh.job.id == job.id and fresh.job.attempts == 2
    assert fresh.token != stale.token
    assert not await qa.heartbeat(job.id, stale.token, 1000)
    assert not await qa.complete(job.id, stale.token, "from a")
    assert await qb.complete(job.id, fresh.token, "from b")
    assert not await qa.complete(job.id, stale.token, "from a")
    done = await qa.get(job.id)
    assert done is not None and done.result == "from b" and done.attempts == 2


async def test_heartbeat_keeps_the_lease(q: QueueBackend, clock: FakeClock) -> None:
    job = await q.enqueue("m", 1)
    [c] = await claim(q, lease_ms=1000)
    for _ in range(3):
        clock.advance(0.8)
        assert await q.heartbeat(job.id, c.token, 1000)
        assert await claim(q, worker="thief") == []
    clock.advance(1.01)
    [again] = await claim(q, worker="thief")
    assert again.job.attempts == 2


async def test_failure_retries_after_backoff_then_dead_letters(
    q: QueueBackend, clock: FakeClock
) -> None:
    job = await q.enqueue("m", "poison")
    for attempt in (1, 2):
        [c] = await claim(q)
        assert c.job.attempts == attempt
        status = await q.fail(job.id, c.token, JobError("ValueError", f"bad {attempt}"))
        assert status is JobStatus.QUEUED
        waiting = await q.get(job.id)
        assert waiting is not None and waiting.error == JobError("ValueError", f"bad {attempt}")
        # backoff with jitter: between half and all of base * 2**(attempt-1)
        clock.advance(0.999 * 2.0 * 2 ** (attempt - 1) / 2)
        assert await claim(q) == []
        clock.advance(2.0 * 2 ** (attempt - 1) / 2)
    [c] = await claim(q)
    assert c.job.attempts == 3
    assert await q.fail(job.id, c.token, JobError("ValueError", "bad 3")) is JobStatus.DEAD
    dead = await q.get(job.id)
    assert dead is not None and dead.status is JobStatus.DEAD and dead.attempts == 3
    assert (await q.stats("m")).dead == 1
    clock.advance(10_000)  # dead letters do not expire
    assert await q.get(job.id) is not None
    assert await claim(q) == []
    assert await q.requeue_dead("m") == 1
    assert await q.requeue_dead("m") == 0
    [c] = await claim(q)
    assert c.job.attempts == 1 and c.job.error is None
    assert (await q.stats("m")).dead == 0


async def test_non_retryable_failure_is_final(q: QueueBackend) -> None:
    job = await q.enqueue("m", "invalid")
    [c] = await claim(q)
    status = await q.fail(job.id, c.token, JobError("InvalidInput", "no"), retryable=False)
    assert status is JobStatus.FAILED
    got = await q.get(job.id)
    assert got is not None and got.status is JobStatus.FAILED and got.status.terminal
    assert await claim(q) == []


async def test_a_job_whose_worker_keeps_dying_is_dead_lettered(
    q: QueueBackend, clock: FakeClock
) -> None:
    job = await q.enqueue("m", "crashes the worker")
    for attempt in (1, 2, 3):
        [c] = await claim(q, lease_ms=1000, worker=f"w{attempt}")
        assert c.job.attempts == attempt
        clock.advance(1.5)  # the worker died: no complete, no heartbeat
    assert await claim(q) == []
    dead = await q.get(job.id)
    assert dead is not None and dead.status is JobStatus.DEAD and dead.attempts == 3
    assert dead.error is not None and dead.error.type == "LeaseExpired"


async def test_cancel_only_queued_jobs(q: QueueBackend) -> None:
    a = await q.enqueue("m", "a")
    b = await q.enqueue("m", "b")
    assert await q.cancel(a.id)
    assert not await q.cancel(a.id)
    [c] = await claim(q)
    assert c.job.id == b.id
    assert not await q.cancel(b.id)
    assert not await q.cancel(str(uuid.uuid4()))
    got = await q.get(a.id)
    assert got is not None and got.status is JobStatus.CANCELLED


async def test_release_gives_the_job_back(q: QueueBackend) -> None:
    job = await q.enqueue("m", 1)
    [c] = await claim(q)
    assert await q.release(job.id, c.token)
    assert not await q.release(job.id, c.token)
    [again] = await claim(q, worker="w2")
    assert again.job.id == job.id
    assert not await q.complete(job.id, c.token, "stale")


async def test_results_expire_after_the_ttl(q: QueueBackend, clock: FakeClock) -> None:
    job = await q.enqueue("m", 1, idempotency_key="once")
    [c] = await claim(q)
    assert await q.complete(job.id, c.token, 2)
    clock.advance(599)
    assert await q.get(job.id) is not None
    assert (await q.enqueue("m", 1, idempotency_key="once")).id == job.id
    clock.advance(2)
    assert await q.get(job.id) is None
    # the key maps to a new job once the old one expired
    assert (await q.enqueue("m", 1, idempotency_key="once")).id != job.id


async def test_stats_count_states_ages_and_waits(q: QueueBackend, clock: FakeClock) -> None:
    empty = await q.stats("m")
    assert (empty.queued, empty.leased, empty.dead, empty.avg_wait_s) == (0, 0, 0, None)
    assert empty.oldest_queued_age_s == 0.0
    for i in range(4):
        await q.enqueue("m", i)
        clock.advance(1.0)
    # enqueued at T0..T0+3, now T0+4: claiming two waited 4 s and 3 s
    await claim(q, 2)
    s = await q.stats("m")
    assert (s.queued, s.leased, s.dead) == (2, 2, 0)
    assert s.oldest_queued_age_s == pytest.approx(2.0)
    assert s.avg_wait_s == pytest.approx(3.5)
    assert await q.depth("m") == 2
    clock.advance(CONFIG.stats_window_s + 5)
    assert (await q.stats("m")).avg_wait_s is None
    assert await q.models() == ["m"]


async def test_enqueue_many_and_complete_many(q: QueueBackend, clock: FakeClock) -> None:
    jobs = await q.enqueue_many("m", [{"i": i} for i in range(40)])
    assert len({j.id for j in jobs}) == 40
    claims = await claim(q, 64, lease_ms=1000)
    assert sorted(c.job.input["i"] for c in claims) == list(range(40))
    clock.advance(1.5)
    [stolen] = await claim(q, 1, worker="w2")  # one lease expired and was taken over
    oks = await q.complete_many([(c.job.id, c.token, c.job.input["i"]) for c in claims])
    assert oks == [c.job.id != stolen.job.id for c in claims]
    for c in claims:
        got = await q.get(c.job.id)
        assert got is not None
        expected = JobStatus.RUNNING if c.job.id == stolen.job.id else JobStatus.SUCCEEDED
        assert got.status is expected


async def test_wait_is_woken_by_completion_in_another_process(
    make_queue: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_notifications_wake(monkeypatch)  # unwoken, the wait runs to its 10 s timeout
    api, worker = make_queue(), make_queue()
    job = await api.enqueue("m", 1)
    waiter = asyncio.create_task(api.wait(job.id, timeout_s=10))
    await asyncio.sleep(0.2)
    [c] = await claim(worker)
    t0 = time.monotonic()
    assert await worker.complete(job.id, c.token, "done")
    done = await waiter
    woke_s = time.monotonic() - t0
    assert done.status is JobStatus.SUCCEEDED and done.result == "done"
    assert woke_s < 5.0, f"woken after {woke_s:.3f} s: the timeout, not a notification"


async def test_wait_times_out_with_the_current_state(q: QueueBackend) -> None:
    job = await q.enqueue("m", 1)
    t0 = time.monotonic()
    got = await q.wait(job.id, timeout_s=0.3)
    assert 0.25 <= time.monotonic() - t0 < 2.0
    assert got.status is JobStatus.QUEUED
    with pytest.raises(JobNotFound):
        await q.wait(str(uuid.uuid4()), timeout_s=0.1)


async def test_enqueue_and_wait_answers_with_the_finished_job(
    make_queue: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_notifications_wake(monkeypatch)  # unwoken, the wait runs to its 10 s timeout
    api, worker = make_queue(), make_queue()

    async def work() -> float:
        [c] = await worker.claim("m", 1, wait_ms=5000, lease_ms=10_000, worker_id="w")
        assert await worker.complete(c.job.id, c.token, c.job.input * 2)
        return time.monotonic()

    working = asyncio.create_task(work())
    done = await api.enqueue_and_wait("m", 21, idempotency_key="k", wait_s=10)
    woke_s = time.monotonic() - await working
    assert done.status is JobStatus.SUCCEEDED and done.result == 42 and done.attempts == 1
    assert done == await api.get(done.id)  # as stored, however the waiter learnt it
    assert woke_s < 5.0, f"woken after {woke_s:.3f} s: the timeout, not a notification"
    # A resubmission with the same key answers with the same finished job at once.
    again = await api.enqueue_and_wait("m", 21, idempotency_key="k", wait_s=10)
    assert again == done
    assert await api.depth("m") == 0


async def test_enqueue_and_wait_times_out_queued_and_refuses_when_full(q: QueueBackend) -> None:
    t0 = time.monotonic()
    job = await q.enqueue_and_wait("m", 1, wait_s=0.3)
    assert 0.25 <= time.monotonic() - t0 < 2.0
    assert job.status is JobStatus.QUEUED and await q.get(job.id) == job
    with pytest.raises(QueueFull):
        await q.enqueue_and_wait("m", 2, max_depth=1, wait_s=5)
    assert await q.depth("m") == 1  # nothing was added


async def test_claim_waits_for_work_and_wakes_on_enqueue(
    make_queue: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_notifications_wake(monkeypatch)  # unwoken, the claim runs to its 5 s wait
    api, worker = make_queue(), make_queue()
    started = time.monotonic()
    claiming = asyncio.create_task(worker.claim("m", 4, wait_ms=5000, lease_ms=1000, worker_id="w"))
    await asyncio.sleep(0.2)
    assert not claiming.done()
    await api.enqueue("m", "wake up")
    claims = await claiming
    assert [c.job.input for c in claims] == ["wake up"]
    assert time.monotonic() - started < 2.5  # woken by the enqueue, not the 5 s wait's end
    t0 = time.monotonic()
    assert await worker.claim("m", 4, wait_ms=300, lease_ms=1000, worker_id="w") == []
    assert 0.25 <= time.monotonic() - t0 < 2.0


async def test_an_expired_lease_counts_as_queued_since_it_ran_out(
    q: QueueBackend, clock: FakeClock
) -> None:
    """Stats: a lease whose worker is gone is not "leased"; the job is claimable again, and
    has waited since its lease ran out."""
    await q.enqueue("m", 1)
    await claim(q, lease_ms=60_000, worker="dies")
    clock.advance(30)
    s = await q.stats("m")
    assert (s.queued, s.leased, s.oldest_queued_age_s) == (0, 1, 0.0)
    clock.advance(90)  # the lease ran out 60 s ago; nobody has reclaimed the job yet
    s = await q.stats("m")
    assert (s.queued, s.leased) == (1, 0)
    assert s.oldest_queued_age_s == pytest.approx(60.0)


async def test_a_claims_wait_counts_from_when_the_job_last_became_claimable(
    q: QueueBackend, clock: FakeClock
) -> None:
    """Not from its enqueue: a reclaimed job waited since its lease expired, a retry since
    its backoff was over. The claimed job's queued_at says when that was (what the worker's
    wait histogram reads)."""
    job = await q.enqueue("m", 1)
    await claim(q, lease_ms=60_000, worker="dies")
    clock.advance(125)  # the lease ran out at T0 + 60: waited 65 s, not 125 s
    [again] = await claim(q, lease_ms=60_000, worker="w2")
    assert again.job.queued_at == pytest.approx(T0 + 60)
    assert again.job.started_at == pytest.approx(T0 + 125)
    s = await q.stats("m")  # the first claim (at T0) left the 60 s window
    assert s.avg_wait_s == pytest.approx(65.0)
    assert (s.queued, s.leased) == (0, 1)
    got = await q.get(job.id)
    assert got is not None and got.queued_at == again.job.queued_at
    # A retry: waited from its due time, not from the failed attempt.
    assert await q.fail(job.id, again.token, JobError("E", "x")) is JobStatus.QUEUED
    retry = await q.get(job.id)
    assert retry is not None and retry.queued_at > clock.now()
    clock.advance(CONFIG.stats_window_s + 30)  # the backoff (at most 4 s) is long over
    [third] = await claim(q)
    assert third.job.queued_at == retry.queued_at
    assert (await q.stats("m")).avg_wait_s == pytest.approx(clock.now() - retry.queued_at)
