"""Per-tenant rate limits: the GCRA policy as a table on a fake clock, one contract over the
memory and Redis limiters, and the API answering 429 per tenant (fail open without its
store)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis

from redis_support import REDIS_URL, delete_prefix, free_port, own_redis
from tenfold.clock import FakeClock
from tenfold.config import ModelSettings, ServerSettings, load_settings
from tenfold.ratelimit import (
    Limiter,
    LimiterUnavailable,
    MemoryLimiter,
    RateLimit,
    RedisLimiter,
    decide,
)
from tenfold.server.app import create_app
from tenfold.server.auth import load_keys
from test_api import running

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef00"

# -- the policy ----------------------------------------------------------------------------

# 2 requests/s, burst 3: three at once, then one every 0.5 s. (now, allowed, retry_after_s)
TABLE = [
    (0.0, True, 0.0),
    (0.0, True, 0.0),
    (0.0, True, 0.0),
    (0.0, False, 0.5),
    (0.3, False, 0.2),
    (0.5, True, 0.0),
    (0.5, False, 0.5),
    (1.0, True, 0.0),
    (10.0, True, 0.0),  # idle long enough: the whole burst is back
    (10.0, True, 0.0),
    (10.0, True, 0.0),
    (10.0, False, 0.5),
]


def test_gcra_table_burst_then_rate() -> None:
    limit = RateLimit.of(2, 3)
    tat = None
    for now, allowed, retry in TABLE:
        d = decide(tat, now, limit)
        assert (d.allowed, round(d.retry_after_s, 9)) == (allowed, retry), (now, d)
        tat = d.tat


def test_remaining_and_cost() -> None:
    limit = RateLimit.of(10, 5)
    d = decide(None, 0.0, limit)
    assert d.remaining == 4
    d = decide(d.tat, 0.0, limit, cost=4)
    assert d.allowed and d.remaining == 0
    refused = decide(d.tat, 0.0, limit, cost=2)
    assert not refused.allowed and refused.tat == d.tat  # refusal costs nothing
    assert round(refused.retry_after_s, 9) == 0.2
    with pytest.raises(ValueError, match="never fit"):
        decide(None, 0.0, limit, cost=6)


@pytest.mark.parametrize(
    ("rate", "burst", "says"),
    [(0, 1, "rate_per_s"), (float("nan"), 1, "rate_per_s"), (1, 0, "burst"), (1, 1.5, "burst")],
)
def test_bad_limits_are_refused(rate: float, burst: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        RateLimit(rate, burst)


def test_default_burst_is_one_seconds_worth() -> None:
    assert RateLimit.of(0.5).burst == 1
    assert RateLimit.of(20).burst == 20


# -- one contract over both limiters -------------------------------------------------------


@pytest_asyncio.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_limiter(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[FakeClock], Limiter]]:
    made: list[Limiter] = []
    prefix = f"tenfold-test:ratelimit:{uuid.uuid4().hex}:"

    def make(clock: FakeClock) -> Limiter:
        limiter: Limiter = (
            MemoryLimiter(clock)
            if request.param == "memory"
            else RedisLimiter(REDIS_URL, prefix=prefix, clock=clock)
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()
    delete_prefix(prefix)


async def test_limiter_follows_the_policy_table(make_limiter: Any) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    limiter = make_limiter(clock)
    limit = RateLimit.of(2, 3)
    start = clock.now()
    for now, allowed, retry in TABLE:
        clock.advance(start + now - clock.now())
        d = await limiter.acquire("alice", limit)
        assert (d.allowed, round(d.retry_after_s, 6)) == (allowed, retry), (now, d)


async def test_callers_are_counted_apart(make_limiter: Any) -> None:
    limiter = make_limiter(FakeClock(start=1_700_000_000.0))
    limit = RateLimit.of(1, 2)
    assert [(await limiter.acquire("alice", limit)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert (await limiter.acquire("bob", limit)).allowed


@pytest.mark.redis
async def test_concurrent_requests_share_round_trips_and_keep_arrival_order() -> None:
    prefix = f"tenfold-test:ratelimit:{uuid.uuid4().hex}:"
    limiter = RedisLimiter(REDIS_URL, prefix=prefix, clock=FakeClock(start=1_700_000_000.0))
    limit = RateLimit.of(1, 5)
    try:
        decisions = await asyncio.gather(*(limiter.acquire("alice", limit) for _ in range(20)))
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 15
        assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
        assert limiter.round_trips < 20  # batched: the first alone, the rest together
        # a waiter cancelled mid-flight does not disturb the others
        waiting = [asyncio.create_task(limiter.acquire(f"c{i}", limit)) for i in range(5)]
        waiting[2].cancel()
        done = await asyncio.gather(*waiting, return_exceptions=True)
        assert isinstance(done[2], asyncio.CancelledError)
        assert all(d.allowed for i, d in enumerate(done) if i != 2)  # type: ignore[union-attr]
    finally:
        await limiter.close()
        delete_prefix(prefix)


@pytest.mark.redis
async def test_replicas_sharing_redis_share_one_count() -> None:
    prefix = f"tenfold-test:ratelimit:{uuid.uuid4().hex}:"
    clock = FakeClock(start=1_700_000_000.0)
    a, b = (RedisLimiter(REDIS_URL, prefix=prefix, clock=clock) for _ in range(2))
    limit = RateLimit.of(1, 2)
    try:
        assert (await a.acquire("alice", limit)).allowed
        assert (await b.acquire("alice", limit)).allowed
        refused = await a.acquire("alice", limit)
        assert not refused.allowed and round(refused.retry_after_s, 6) == 1.0
        # the key expires once the bucket is full again (plus a second), not never
        ttl_ms = redis.Redis.from_url(REDIS_URL).pttl(prefix + "alice")
        assert 0 < ttl_ms <= 3000
    finally:
        await a.close()
        await b.close()
        delete_prefix(prefix)


async def test_redis_down_is_limiter_unavailable_within_the_timeout() -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(LimiterUnavailable):
            await limiter.acquire("alice", RateLimit.of(1))
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await limiter.close()


@pytest.mark.parametrize(("rate", "burst"), [(3, 3), (100, 100), (1000, 1000)])
async def test_a_burst_at_one_instant_admits_exactly_burst(
    make_limiter: Any, rate: float, burst: int
) -> None:
    # The sum of the intervals lands a hair over burst / rate: the last one was refused.
    limiter = make_limiter(FakeClock(start=1000.0))
    limit = RateLimit.of(rate, burst)
    decisions = [await limiter.acquire("alice", limit) for _ in range(burst + 2)]
    assert [d.allowed for d in decisions] == [True] * burst + [False] * 2


@pytest.mark.redis
async def test_redis_counts_exactly_at_epoch_scale_and_high_rates() -> None:
    """At 1.7e9 s a double's step is 2.4e-7 s: an absolute tat plus each 0.1 ms interval
    rounded to 419 steps (10,010 requests a second at 10,000/s; no limit past ~4M/s)."""
    prefix = f"tenfold-test:ratelimit:{uuid.uuid4().hex}:"
    clock = FakeClock(start=1_700_000_000.0)
    # A generous timeout: this is about arithmetic, and starting 10,020 acquires at once
    # keeps the event loop busy past the default 0.1 s while the first call is in flight.
    limiter = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock, timeout_s=5)
    try:
        for rate, burst in [(10_000, 10_000), (5e6, 1000)]:
            limit = RateLimit.of(rate, burst)
            key = f"r{rate:g}"
            decisions = await asyncio.gather(
                *(limiter.acquire(key, limit) for _ in range(burst + 20))
            )
            assert sum(d.allowed for d in decisions) == burst, rate
            assert [d.remaining for d in decisions[:3]] == [burst - 1, burst - 2, burst - 3]
        clock.advance(0.5)  # then the rate: 5,000 more in half a second, not 5,005
        limit = RateLimit.of(10_000, 10_000)
        later = await asyncio.gather(*(limiter.acquire("r10000", limit) for _ in range(5020)))
        assert sum(d.allowed for d in later) == 5000
    finally:
        await limiter.close()
        delete_prefix(prefix)


def _blocked_limiter(answer: Any = None) -> tuple[RedisLimiter, asyncio.Event]:
    """A limiter whose script call waits for the event, then answers ``answer``."""
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    gate = asyncio.Event()

    async def script(keys: list[str], args: list[Any]) -> Any:
        await gate.wait()
        return answer

    limiter._script = script
    return limiter, gate


async def test_a_reply_it_cannot_read_fails_every_waiter_open_not_hangs() -> None:
    limiter, gate = _blocked_limiter(answer=[1, b"0.5"])  # one value short of a decision
    waiting = [asyncio.create_task(limiter.acquire(c, RateLimit.of(1))) for c in "ab"]
    await asyncio.sleep(0.01)
    gate.set()
    done = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    assert all(isinstance(d, LimiterUnavailable) for d in done), done
    await limiter.close()


async def test_close_answers_every_waiter_at_once() -> None:
    """A lone call in flight (sent from its caller's task) and the calls queued behind it:
    Redis is paused, so nothing would answer them for 5 s; close() answers them all now."""
    with own_redis(durable=False) as server:
        limiter = RedisLimiter(server.url, timeout_s=5)
        await limiter.acquire("warm", RateLimit.of(1))  # connected
        with redis.Redis.from_url(server.url) as pauser:  # the server is killed after
            pauser.execute_command("CLIENT", "PAUSE", "5000", "ALL")
        lone = asyncio.create_task(limiter.acquire("a", RateLimit.of(1)))
        await asyncio.sleep(0.05)  # sent: the server holds it
        queued = [asyncio.create_task(limiter.acquire(c, RateLimit.of(1))) for c in "bc"]
        await asyncio.sleep(0)
        started = asyncio.get_running_loop().time()
        await limiter.close()
        done = await asyncio.wait_for(asyncio.gather(lone, *queued, return_exceptions=True), 5)
        # Not a CancelledError: the waiters' own tasks were not cancelled.
        assert all(isinstance(d, LimiterUnavailable) for d in done), done
        assert asyncio.get_running_loop().time() - started < 2.5
        with pytest.raises(LimiterUnavailable, match="closed"):
            await limiter.acquire("d", RateLimit.of(1))


# -- settings ------------------------------------------------------------------------------


def test_rate_limit_settings() -> None:
    environ = {"TENFOLD_API_KEYS": ALICE, "TENFOLD_RATE_LIMIT_RPS": "5"}
    s = load_settings(targets=["toymodels:Upper"], environ=environ)
    assert (s.rate_limit_rps, s.rate_limit_burst, s.rate_limit_url) == (5.0, 0, "memory://")
    with pytest.raises(ValueError, match="tenants are API keys"):
        load_settings(targets=["toymodels:Upper"], environ={"TENFOLD_RATE_LIMIT_RPS": "5"})
    with pytest.raises(ValueError, match="rate_limit_rps must be >= 0"):
        load_settings(
            targets=["toymodels:Upper"],
            environ={"TENFOLD_API_KEYS": ALICE, "TENFOLD_RATE_LIMIT_RPS": "-1"},
        )


# -- the API ------------------------------------------------------------------------------


def settings_for(tmp: Path, **extra: Any) -> ServerSettings:
    return ServerSettings(
        models=(ModelSettings("toymodels:Upper", workers=1),),
        queue_url=None,
        api_keys=load_keys(None, f"{ALICE},{BOB}"),
        **extra,
    )


@pytest_asyncio.fixture
async def limited(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # 0.1 requests/s, burst 2: a third request within 10 s is refused, however slow
    # this machine is.
    app = create_app(settings_for(tmp_path, rate_limit_rps=0.1, rate_limit_burst=2))
    async with running(app) as client:
        yield client


def as_(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_tenant_over_its_limit_gets_429_and_others_do_not(
    limited: httpx.AsyncClient,
) -> None:
    url, body = "/v1/models/upper/predict", {"input": "hi"}
    first = [await limited.post(url, json=body, headers=as_(ALICE)) for _ in range(2)]
    assert [r.status_code for r in first] == [200, 200]
    refused = await limited.post(url, json=body, headers=as_(ALICE))
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limited" and "'key-" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    assert error["details"]["burst"] == 2
    # another tenant has its own budget; open routes and bad keys are not counted
    assert (await limited.post(url, json=body, headers=as_(BOB))).status_code == 200
    assert [(await limited.get("/healthz")).status_code for _ in range(5)] == [200] * 5
    assert (await limited.get("/v1/models")).status_code == 401
    metrics = (await limited.get("/metrics", headers=as_(BOB))).text
    assert 'tenfold_rate_limited_total{tenant="key-' in metrics


async def test_without_its_store_the_api_admits_and_counts(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(
        settings_for(tmp_path, rate_limit_rps=0.1, rate_limit_burst=1, rate_limit_url=dead)
    )
    async with running(app) as client:
        for _ in range(3):
            r = await client.post(
                "/v1/models/upper/predict", json={"input": "x"}, headers=as_(ALICE)
            )
            assert r.status_code == 200, r.text
        metrics = (await client.get("/metrics", headers=as_(ALICE))).text
        line = next(
            x for x in metrics.splitlines() if x.startswith("tenfold_rate_limit_errors_total ")
        )
        assert float(line.split()[-1]) >= 3
