"""Result cache: keys, TTL, single-flight, errors never cached, purge."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from cache_support import MAIN_REDIS_URL, unique_prefix
from tenfold.cache import (
    CacheBackend,
    MemoryBackend,
    Outcome,
    ResultCache,
    ResultCacheConfig,
    from_url,
)
from tenfold.cache.keys import KEY_SCHEMA_VERSION
from tenfold.cache.result import MAX_REJOINS, NotCanonicalizable, canonical_json
from tenfold.clock import FakeClock
from tenfold.errors import DeadlineExceeded, ModelError, Overloaded, QueueFull


class Model:
    """A stand-in model that counts its own calls and can be held at a gate."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None

    async def __call__(self, x: Any) -> dict[str, Any]:
        self.calls += 1
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return {"y": x, "call": self.calls}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[ResultCache]:
    # A unique namespace per test keeps parallel runs on the shared Redis apart.
    namespace = unique_prefix().replace(":", "-").rstrip("-")
    backend: CacheBackend
    if request.param == "memory":
        backend = MemoryBackend(clock=FakeClock())
    else:
        backend = from_url(MAIN_REDIS_URL + "?timeout_ms=1000")
    yield ResultCache(backend, config=ResultCacheConfig(namespace=namespace))
    await backend.delete_prefix(namespace + ":")
    await backend.close()


async def ask(
    cache: ResultCache, model: Model, x: Any, *, version: str = "1", **kw: Any
) -> tuple[Any, Outcome]:
    res = await cache.get_or_compute(
        model="m", version=version, input=x, compute=lambda: model(x), **kw
    )
    return res.value, res.outcome


async def until(predicate: Any, timeout_s: float = 10.0) -> None:
    """Let the event loop run until ``predicate()`` holds.

    Bounded by time, not by loop turns: with Redis a lookup is a real round trip, and a
    fast machine spins thousands of idle turns before it answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    turns = 0
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition never reached")
        # Single loop turns first (some tests must catch a task mid-lookup), then poll.
        turns += 1
        await asyncio.sleep(0 if turns < 10_000 else 0.0005)


async def test_100_concurrent_identical_misses_make_one_call(cache: ResultCache) -> None:
    model = Model()
    model.gate.clear()
    tasks = [asyncio.create_task(ask(cache, model, {"q": "same"})) for _ in range(100)]
    await until(lambda: cache.stats.coalesced == 99 and model.calls == 1)
    model.gate.set()
    results = await asyncio.gather(*tasks)
    assert model.calls == 1
    assert {json.dumps(v) for v, _ in results} == {json.dumps({"y": {"q": "same"}, "call": 1})}
    outcomes = [o for _, o in results]
    assert outcomes.count(Outcome.MISS) == 1
    assert outcomes.count(Outcome.COALESCED) == 99
    # Afterwards it is a plain hit, still without a call.
    assert await ask(cache, model, {"q": "same"}) == ({"y": {"q": "same"}, "call": 1}, Outcome.HIT)
    assert model.calls == 1
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


@pytest.mark.parametrize(
    "error",
    # A model's own failure, also as the project's ModelError (a TenfoldError, but not one
    # of the per-request errors followers retry): every waiter gets it, one computation.
    [RuntimeError("CUDA out of memory"), ModelError("the model ran out of memory")],
    ids=["exception", "model_error"],
)
async def test_an_error_reaches_every_waiter_and_is_never_cached(
    cache: ResultCache, error: Exception
) -> None:
    model = Model()
    model.gate.clear()
    model.fail_with = error
    tasks = [asyncio.create_task(ask(cache, model, "x")) for _ in range(20)]
    await until(lambda: cache.stats.coalesced == 19)
    model.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, type(error)) and "out of memory" in str(r) for r in results)
    assert model.calls == 1
    # Nothing was stored: the next identical request computes again, and that success sticks.
    model.fail_with = None
    assert await ask(cache, model, "x") == ({"y": "x", "call": 2}, Outcome.MISS)
    assert await ask(cache, model, "x") == ({"y": "x", "call": 2}, Outcome.HIT)


async def test_keys_isolate_model_version_tenant_and_params(cache: ResultCache) -> None:
    model = Model()
    await ask(cache, model, "x")
    assert (await ask(cache, model, "x"))[1] is Outcome.HIT
    assert (await ask(cache, model, "x", version="2"))[1] is Outcome.MISS
    assert (await ask(cache, model, "x", tenant="alice"))[1] is Outcome.MISS
    assert (await ask(cache, model, "x", tenant="bob"))[1] is Outcome.MISS
    assert (await ask(cache, model, "x", tenant="alice"))[1] is Outcome.HIT
    assert (await ask(cache, model, "x", params={"k": 3}))[1] is Outcome.MISS
    assert model.calls == 5
    other = await cache.get_or_compute(model="m2", version="1", input="x", compute=lambda: model(1))
    assert other.outcome is Outcome.MISS
    assert model.calls == 6


def test_key_is_sha256_of_canonical_json_under_a_model_prefix() -> None:
    cache = ResultCache(MemoryBackend())
    a = cache.key("embed", "3", {"b": [1, {"z": 1, "a": 2}], "a": "é"}, {"top_k": 5}, "t1")
    b = cache.key("embed", "3", {"a": "é", "b": [1, {"a": 2, "z": 1}]}, {"top_k": 5}, "t1")
    assert a == b
    sorted_input = {"a": "é", "b": [1, {"a": 2, "z": 1}]}
    material = json.dumps(
        [KEY_SCHEMA_VERSION, "t1", "embed", "3", sorted_input, {"top_k": 5}],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert a == f"tenfold:r:{KEY_SCHEMA_VERSION}:embed:" + hashlib.sha256(material).hexdigest()
    # No tenant and the empty tenant are the same scope; a ':' in a model name is quoted.
    assert cache.key("m", "1", 1) == cache.key("m", "1", 1, tenant="")
    assert cache.key("a:b", "1", 1).startswith(f"tenfold:r:{KEY_SCHEMA_VERSION}:a%3Ab:")


async def test_default_ttl_is_300_s_and_per_model_override() -> None:
    clock = FakeClock()
    cache = ResultCache(
        MemoryBackend(clock=clock), config=ResultCacheConfig(model_ttl_s={"fast": 10.0})
    )
    assert cache.config.ttl_s == 300.0
    model = Model()

    async def outcome(name: str) -> Outcome:
        res = await cache.get_or_compute(
            model=name, version="1", input="x", compute=lambda: model("x")
        )
        return res.outcome

    assert [await outcome("m"), await outcome("fast")] == [Outcome.MISS, Outcome.MISS]
    clock.advance(9.9)
    assert [await outcome("m"), await outcome("fast")] == [Outcome.HIT, Outcome.HIT]
    clock.advance(0.2)
    assert [await outcome("m"), await outcome("fast")] == [Outcome.HIT, Outcome.MISS]
    clock.advance(290.0)  # 300.1 s after the first store
    assert await outcome("m") is Outcome.MISS


async def test_bypass_skips_the_lookup_and_refreshes_the_entry(cache: ResultCache) -> None:
    model = Model()
    assert await ask(cache, model, "x") == ({"y": "x", "call": 1}, Outcome.MISS)
    res = await cache.get_or_compute(
        model="m", version="1", input="x", compute=lambda: model("x"), bypass=True
    )
    assert (res.value, res.outcome, res.header) == ({"y": "x", "call": 2}, Outcome.BYPASS, "miss")
    assert await ask(cache, model, "x") == ({"y": "x", "call": 2}, Outcome.HIT)


async def test_purge_model_drops_only_that_model(cache: ResultCache) -> None:
    model = Model()
    for name in ("a", "a:b", "ab"):
        for x in range(3):
            await cache.get_or_compute(model=name, version="1", input=x, compute=lambda: model(0))
    assert await cache.purge_model("a") == 3
    assert model.calls == 9
    for name, expected in (("a", Outcome.MISS), ("a:b", Outcome.HIT), ("ab", Outcome.HIT)):
        res = await cache.get_or_compute(model=name, version="1", input=0, compute=lambda: model(0))
        assert res.outcome is expected, name


async def test_a_flight_that_straddles_a_purge_does_not_write_back(cache: ResultCache) -> None:
    model = Model()
    model.gate.clear()
    task = asyncio.create_task(ask(cache, model, "x"))
    await until(lambda: model.calls == 1)
    await cache.purge_model("m")
    model.gate.set()
    assert await task == ({"y": "x", "call": 1}, Outcome.MISS)
    assert (await ask(cache, model, "x"))[1] is Outcome.MISS


async def test_a_cancelled_leader_does_not_cancel_its_followers(cache: ResultCache) -> None:
    model = Model()
    model.gate.clear()
    leader = asyncio.create_task(ask(cache, model, "x"))
    await until(lambda: model.calls == 1)
    follower = asyncio.create_task(ask(cache, model, "x"))
    await until(lambda: cache.stats.coalesced == 1)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    model.gate.set()
    assert await follower == ({"y": "x", "call": 1}, Outcome.COALESCED)
    assert (await ask(cache, model, "x"))[1] is Outcome.HIT


async def test_inputs_without_canonical_json_are_computed_uncached() -> None:
    cache = ResultCache(MemoryBackend())
    model = Model()
    for _ in range(2):
        res = await cache.get_or_compute(
            model="m", version="1", input={1j}, compute=lambda: model("set")
        )
        assert res.outcome is Outcome.BYPASS
    assert model.calls == 2


async def test_outputs_that_are_not_json_are_returned_but_not_cached() -> None:
    cache = ResultCache(MemoryBackend())
    calls = 0

    async def compute() -> object:
        nonlocal calls
        calls += 1
        return object()

    for _ in range(2):
        res = await cache.get_or_compute(model="m", version="1", input="x", compute=compute)
        assert res.outcome is Outcome.MISS
    assert calls == 2


def test_header_values() -> None:
    from tenfold.cache import CachedResult

    assert [CachedResult(None, o).header for o in Outcome] == ["hit", "miss", "hit", "miss"]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        ResultCacheConfig(ttl_s=0)
    with pytest.raises(ValueError, match="for slow"):
        ResultCacheConfig(model_ttl_s={"slow": -1.0})
    with pytest.raises(ValueError, match="namespace"):
        ResultCacheConfig(namespace="a:b")


@pytest.mark.redis
async def test_a_leader_cancelled_during_its_lookup_hands_over_to_a_follower() -> None:
    namespace = unique_prefix().replace(":", "-").rstrip("-")
    backend = from_url(MAIN_REDIS_URL + "?timeout_ms=1000")
    cache = ResultCache(backend, config=ResultCacheConfig(namespace=namespace))
    model = Model()
    try:
        leader = asyncio.create_task(ask(cache, model, "x"))
        # Redis lookups suspend: step until the leader is waiting on the network.
        await until(lambda: cache.stats.misses == 0 and len(cache._flights) == 1)
        follower = asyncio.create_task(ask(cache, model, "x"))
        await until(lambda: cache.stats.coalesced == 1)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        # The follower starts over as the new leader, misses and computes once.
        assert await follower == ({"y": "x", "call": 1}, Outcome.MISS)
        assert cache.stats.coalesced == 0
    finally:
        await backend.delete_prefix(namespace + ":")
        await backend.close()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("no-cache", True),
        ("max-age=0, No-Cache", True),
        ('no-cache="set-cookie"', True),
        ("no-store", False),
        ("max-age=60", False),
    ],
)
def test_no_cache_requested(header: str | None, expected: bool) -> None:
    from tenfold.cache import no_cache_requested

    assert no_cache_requested(header) is expected


async def test_non_finite_inputs_never_share_a_key_with_null() -> None:
    """orjson writes NaN and +-Infinity as null: such inputs are computed, never stored."""
    cache = ResultCache(MemoryBackend())

    async def answer(name: str) -> str:
        return f"answer for {name}"

    inputs: list[tuple[str, Any]] = [
        ("nan", [float("nan")]),
        ("inf", [float("inf")]),
        ("-inf", [float("-inf")]),
        ("null", [None]),
        ("numpy nan", {"v": np.array([1.0, np.nan])}),
    ]
    for _ in range(2):
        for name, x in inputs:
            res = await cache.get_or_compute(
                model="m", version="1", input=x, compute=lambda n=name: answer(n)
            )
            assert res.value == f"answer for {name}"
    assert (cache.stats.bypasses, cache.stats.misses, cache.stats.hits) == (8, 1, 1)
    # Non-finite params are refused as well; a null or a "null" string alone is fine.
    with pytest.raises(NotCanonicalizable):
        cache.key("m", "1", "x", params={"t": float("nan")})
    assert canonical_json({"a": None, "b": "null", "c": 1.5}) == b'{"a":null,"b":"null","c":1.5}'


def test_a_finite_input_is_not_walked_for_non_finite_floats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The NaN check walks the input only when its JSON holds a null the key did not put
    there itself (``params=None`` is one): a cached predict's key costs one orjson call."""
    from tenfold.cache import result

    walks: list[object] = []
    real = result._has_non_finite
    monkeypatch.setattr(result, "_has_non_finite", lambda o: walks.append(o) or real(o))
    cache = ResultCache(MemoryBackend())
    cache.key("m", "1", [float(i) for i in range(1000)])
    cache.key("m", "1", {"text": "hello"}, params={"top_k": 3})
    assert walks == []
    with pytest.raises(NotCanonicalizable):
        cache.key("m", "1", [1.0, float("nan")])
    assert walks  # a null beyond params' own: walked, and refused


@pytest.mark.parametrize(
    "error",
    [DeadlineExceeded("leader's 1 ms deadline"), Overloaded("shed"), QueueFull("queue full")],
)
async def test_a_follower_retries_when_its_leader_failed_for_its_own_request(
    cache: ResultCache, error: Exception
) -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def leader_compute() -> str:
        calls.append("leader")
        await gate.wait()
        raise error

    async def follower_compute() -> str:
        calls.append("follower")
        return "ok"

    def ask_with(compute: Any) -> Any:
        return cache.get_or_compute(model="m", version="1", input="x", compute=compute)

    leader = asyncio.create_task(ask_with(leader_compute))
    await until(lambda: calls == ["leader"])
    follower = asyncio.create_task(ask_with(follower_compute))
    await until(lambda: cache.stats.coalesced == 1)
    gate.set()
    with pytest.raises(type(error)):
        await leader
    res = await follower
    assert (res.value, res.outcome) == ("ok", Outcome.MISS)  # its own request decided
    assert calls == ["leader", "follower"]
    assert cache.stats.coalesced == 0
    assert (await ask_with(leader_compute)).outcome is Outcome.HIT


async def test_per_request_failures_are_retried_a_bounded_number_of_times(
    cache: ResultCache,
) -> None:
    """A model that makes every request miss its deadline: each follower starts over at
    most MAX_REJOINS times, so a burst costs 1 + MAX_REJOINS calls, not one per follower."""
    model = Model()
    model.gate.clear()
    model.fail_with = DeadlineExceeded("too slow")
    tasks = [asyncio.create_task(ask(cache, model, "x")) for _ in range(6)]
    await until(lambda: cache.stats.coalesced == 5)
    model.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, DeadlineExceeded) for r in results)
    assert model.calls == 1 + MAX_REJOINS
    assert not cache._flights
