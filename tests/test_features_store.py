"""The online feature store over the real cache backends (memory with a fake clock, Redis)."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tenfold.cache import CacheBackend, ResilientBackend, from_url
from tenfold.cache.resilient import ResilientConfig
from tenfold.clock import FakeClock
from tenfold.errors import FeatureLoadError, FeatureViewNotFound, InvalidInput
from tenfold.features import FeatureStore, FeatureView

REDIS_URL = "redis://127.0.0.1:6379/0?timeout_ms=1000"


@dataclass
class Source:
    """An offline table in a dict; records every loader call (the ids it was asked for)."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    gate: threading.Event | None = None
    fail: bool = False

    def load(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.calls.append(list(ids))
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise ConnectionError("offline source is down")
        return {i: dict(self.rows[i]) for i in ids if i in self.rows}


def users(n: int = 10) -> dict[str, dict[str, Any]]:
    return {f"u{i}": {"orders": i, "country": "DE" if i % 2 else "FR"} for i in range(n)}


class CountingBackend:
    """The real backend underneath, counting round trips (get_many calls)."""

    def __init__(self, inner: CacheBackend) -> None:
        self.inner = inner
        self.gets: list[int] = []

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.gets.append(len(keys))
        return await self.inner.get_many(keys)

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        await self.inner.set_many(items, ttl_s)

    async def delete_prefix(self, prefix: str) -> int:
        return await self.inner.delete_prefix(prefix)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Harness:
    backend: CountingBackend
    namespace: str
    clock: FakeClock | None

    def store(self, *views: FeatureView) -> FeatureStore:
        return FeatureStore(self.backend, views=views, namespace=self.namespace)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    namespace = f"tenfold-test-{uuid.uuid4().hex[:10]}"
    if request.param == "memory":
        clock = FakeClock()
        backend = CountingBackend(from_url("memory://", clock=clock))
        yield Harness(backend, namespace, clock)
        await backend.close()
    else:
        backend = CountingBackend(from_url(REDIS_URL))
        try:
            yield Harness(backend, namespace, None)
        finally:
            await backend.delete_prefix(f"{namespace}:")
            await backend.close()


async def test_batch_fetch_is_one_round_trip_and_one_loader_call_for_the_misses(
    harness: Harness,
):
    source = Source(users(10))
    store = harness.store(FeatureView("users", "user_id", source.load))
    assert await store.get_many("users", ["u1", "u2", "u3"]) == [
        source.rows["u1"],
        source.rows["u2"],
        source.rows["u3"],
    ]
    await store.wait_idle()
    source.calls.clear()
    harness.backend.gets.clear()
    ids = ["u3", "u4", "u1", "u5", "u4", "nobody", "u2", "u6"]
    rows = await store.get_many("users", ids)
    assert rows == [source.rows.get(i) for i in ids]
    await store.wait_idle()
    assert harness.backend.gets == [7]  # one lookup for the 7 distinct ids
    assert source.calls == [["u4", "u5", "nobody", "u6"]]  # only the misses, once each
    # The unknown id is remembered too: asking again reaches no loader.
    assert await store.get_many("users", ["nobody", "u5"]) == [None, source.rows["u5"]]
    assert len(source.calls) == 1
    assert (store.stats.hits, store.stats.misses) == (3 + 2, 3 + 4)


async def test_max_batch_splits_large_miss_sets(harness: Harness):
    source = Source(users(25))
    store = harness.store(FeatureView("users", "user_id", source.load, max_batch=10))
    rows = await store.get_many("users", [f"u{i}" for i in range(25)])
    assert [r["orders"] for r in rows if r] == list(range(25))
    assert [len(c) for c in source.calls] == [10, 10, 5]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stampede_50_concurrent_gets_cost_one_loader_call(harness: Harness, kind: str):
    source = Source(users(3))
    calls: list[list[str]] = []
    release = asyncio.Event()

    async def async_loader(ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        calls.append(list(ids))
        await release.wait()
        return {i: source.rows[i] for i in ids if i in source.rows}

    if kind == "sync":
        source.gate = threading.Event()
        view = FeatureView("users", "user_id", source.load)
        calls = source.calls
    else:
        view = FeatureView("users", "user_id", async_loader)
    store = harness.store(view)
    tasks = [asyncio.create_task(store.get("users", "u1")) for _ in range(50)]
    for _ in range(20):  # let every task reach its wait
        await asyncio.sleep(0)
    if source.gate is not None:
        source.gate.set()
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == [["u1"]]
    assert results == [source.rows["u1"]] * 50
    assert store.stats.coalesced == 49
    # Each caller got its own dict.
    results[0]["orders"] = 999
    assert results[1]["orders"] == 1


async def test_concurrent_overlapping_batches_load_each_entity_once(harness: Harness):
    source = Source(users(20))
    store = harness.store(FeatureView("users", "user_id", source.load))
    batches = [[f"u{(start + j) % 20}" for j in range(8)] for start in range(0, 20, 2)]
    results = await asyncio.gather(*(store.get_many("users", b) for b in batches))
    for batch, rows in zip(batches, results, strict=True):
        assert rows == [source.rows[i] for i in batch]
    loaded = [i for call in source.calls for i in call]
    assert sorted(loaded) == sorted(set(loaded)) == sorted(source.rows)


async def test_feature_ttl_with_a_fake_clock():
    clock = FakeClock()
    backend = from_url("memory://", clock=clock)
    source = Source(users(3))
    store = FeatureStore(
        backend, views=[FeatureView("users", "user_id", source.load, ttl_s=3600, missing_ttl_s=60)]
    )
    assert (await store.get("users", "u1"))["orders"] == 1  # type: ignore[index]
    assert await store.get("users", "ghost") is None
    source.rows["u1"]["orders"] = 42  # the offline source changes
    clock.advance(59)
    assert (await store.get("users", "u1"))["orders"] == 1  # type: ignore[index]
    assert await store.get("users", "ghost") is None
    assert len(source.calls) == 2
    clock.advance(2)  # the missing marker expires after 60 s
    source.rows["ghost"] = {"orders": 7, "country": "JP"}
    assert await store.get("users", "ghost") == {"orders": 7, "country": "JP"}
    clock.advance(3600 - 61 - 1)
    assert (await store.get("users", "u1"))["orders"] == 1  # type: ignore[index]
    clock.advance(1)  # one hour after it was loaded
    assert (await store.get("users", "u1"))["orders"] == 42  # type: ignore[index]
    assert source.calls == [["u1"], ["ghost"], ["ghost"], ["u1"]]


async def test_loader_failure_reaches_every_waiter_and_is_not_cached(harness: Harness):
    source = Source(users(3), fail=True)
    store = harness.store(FeatureView("users", "user_id", source.load))
    outcomes = await asyncio.gather(
        *(store.get("users", "u1") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, FeatureLoadError) for o in outcomes)
    assert "offline source is down" in str(outcomes[0])
    assert len(source.calls) == 1
    source.fail = False
    assert await store.get("users", "u1") == source.rows["u1"]
    assert len(source.calls) == 2


async def test_a_cancelled_first_caller_does_not_strand_the_others(harness: Harness):
    release = asyncio.Event()
    calls = 0

    async def loader(ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {i: {"x": 1} for i in ids}

    store = harness.store(FeatureView("v", "id", loader))
    first = asyncio.create_task(store.get("v", "a"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(store.get("v", "a"))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await second == {"x": 1}
    assert first.cancelled() and calls == 1
    await store.close()


async def test_views_are_isolated_by_name_and_version(harness: Harness):
    v1 = Source({"a": {"x": 1}})
    v2 = Source({"a": {"x": 2}})
    store = harness.store(FeatureView("v", "id", v1.load, version="1"))
    assert await store.get("v", "a") == {"x": 1}
    bumped = harness.store(FeatureView("v", "id", v2.load, version="2"))
    assert await bumped.get("v", "a") == {"x": 2}  # a new version never reads old values
    assert await harness.store(FeatureView("v", "id", v1.load, version="1")).get("v", "a") == {
        "x": 1
    }
    assert await store.invalidate("v") == 2
    assert await store.get("v", "a") == {"x": 1}
    assert len(v1.calls) == 2


async def test_unknown_view_and_bad_ids(harness: Harness):
    store = harness.store(FeatureView("users", "user_id", Source().load))
    with pytest.raises(FeatureViewNotFound):
        await store.get("nope", "u1")
    with pytest.raises(InvalidInput, match="user_id must be a non-empty string"):
        await store.get_many("users", ["u1", ""])
    with pytest.raises(InvalidInput):
        await store.get_many("users", [3])  # type: ignore[list-item]


async def test_bad_loader_output_is_a_feature_load_error(harness: Harness):
    store = harness.store(
        FeatureView("a", "id", lambda ids: [1, 2]),  # type: ignore[arg-type,return-value]
        FeatureView("b", "id", lambda ids: {i: 5 for i in ids}),  # type: ignore[arg-type,misc]
        FeatureView("c", "id", lambda ids: {i: {"t": object()} for i in ids}),
    )
    for name in ("a", "b", "c"):
        with pytest.raises(FeatureLoadError):
            await store.get(name, "x")


def test_feature_view_validation():
    with pytest.raises(ValueError, match="name"):
        FeatureView("bad name", "id", Source().load)
    with pytest.raises(ValueError, match="ttl_s"):
        FeatureView("v", "id", Source().load, ttl_s=0)
    with pytest.raises(ValueError, match="max_batch"):
        FeatureView("v", "id", Source().load, max_batch=0)


async def test_cache_down_means_served_from_the_source():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = ResilientBackend(
        from_url(f"redis://127.0.0.1:{port}/0?timeout_ms=50"),
        config=ResilientConfig(op_timeout_s=0.2),
        name="features",
    )
    source = Source(users(3))
    store = FeatureStore(backend, views=[FeatureView("users", "user_id", source.load)])
    assert await store.get_many("users", ["u1", "u2"]) == [source.rows["u1"], source.rows["u2"]]
    assert await store.get("users", "u1") == source.rows["u1"]
    assert len(source.calls) == 2  # no cache: every request reads the source
    assert backend.stats.errors >= 1
    await backend.close()


async def test_materialize_marks_entities_the_source_no_longer_has(harness: Harness):
    source = Source(users(3))
    view = FeatureView("users", "user_id", source.load, ttl_s=3600, missing_ttl_s=60)
    store = harness.store(view)
    assert await store.get_many("users", ["u1", "u2"]) == [source.rows["u1"], source.rows["u2"]]
    await store.wait_idle()
    del source.rows["u2"]  # deleted at the source
    source.rows["u1"] = {"orders": 100, "country": "DE"}
    report = await store.materialize("users", ["u1", "u2"])
    assert (report.stored, report.missing) == (1, 1)
    calls = len(source.calls)
    assert await store.get_many("users", ["u1", "u2"]) == [source.rows["u1"], None]
    assert len(source.calls) == calls  # both answered from the cache
    if harness.clock is not None:  # the absent marker lives missing_ttl_s, like a miss's
        source.rows["u2"] = {"orders": 2, "country": "FR"}
        harness.clock.advance(61)
        assert await store.get("users", "u2") == source.rows["u2"]


async def test_invalidate_during_a_fetch_is_not_undone_by_it(harness: Harness):
    source = {"u1": {"score": 1}}
    started, gate = asyncio.Event(), asyncio.Event()

    async def loader(ids: list[str]) -> dict[str, dict[str, Any]]:
        snapshot = {i: dict(source[i]) for i in ids if i in source}  # reads the source now
        started.set()
        await gate.wait()
        return snapshot

    store = harness.store(FeatureView("v", "id", loader))
    first = asyncio.create_task(store.get("v", "u1"))
    await started.wait()  # the fetch has read the old value
    source["u1"] = {"score": 2}
    await store.invalidate("v")
    second = asyncio.create_task(store.get("v", "u1"))  # must not join the old fetch
    gate.set()
    assert await first == {"score": 1}  # asked before the update
    assert await second == {"score": 2}
    await store.wait_idle()
    assert await store.get("v", "u1") == {"score": 2}  # the old fetch stored nothing


async def test_a_non_finite_feature_fails_only_its_entity(harness: Harness):
    source = Source({"u1": {"score": 1.5}, "u2": {"score": float("nan")}})
    store = harness.store(FeatureView("users", "user_id", source.load))
    with pytest.raises(FeatureLoadError, match=r"'score'.*finite"):
        await store.get_many("users", ["u1", "u2"])  # one fetch, one loader call
    await store.wait_idle()
    assert await store.get("users", "u1") == {"score": 1.5}
    assert source.calls == [["u1", "u2"]]  # u1 was stored by the failed batch
    with pytest.raises(FeatureLoadError, match="finite"):
        await store.materialize("users", ["u2"])
