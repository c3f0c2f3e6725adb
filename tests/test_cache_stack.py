"""Cache stack from a URL, Prometheus families and the /v1/stats snapshot."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cache_support import free_port, unique_prefix
from tenfold.cache import (
    CacheSettings,
    CacheStack,
    InvalidCacheURL,
    LayerStats,
    MemoryBackend,
    Outcome,
    ResilientBackend,
    ResultCacheConfig,
)
from tenfold.cache.stats import usd_saved
from tenfold.clock import FakeClock


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_stack_from_memory_url_exports_every_family() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    stack = CacheStack.from_url(
        "memory://?max_entries=2&max_bytes=1000000", clock=clock, registry=registry
    )
    assert stack.enabled and stack.result is not None
    calls = 0

    async def compute() -> list[float]:
        nonlocal calls
        calls += 1
        return [0.5]

    for x in ["a", "a", "b", "c", "a"]:
        await stack.result.get_or_compute(model="m", version="1", input=x, compute=compute)
    assert calls == 4  # a, b, c, then a again: evicted by the 2-entry bound
    assert sample(registry, "tenfold_cache_requests_total", layer="result", result="hit") == 1
    assert sample(registry, "tenfold_cache_requests_total", layer="result", result="miss") == 4
    assert sample(registry, "tenfold_cache_entries", layer="result") == 2
    assert sample(registry, "tenfold_cache_evictions_total", layer="result") == 2
    used = sample(registry, "tenfold_cache_bytes", layer="result")
    assert used is not None and used > 0
    assert sample(registry, "tenfold_cache_errors_total", layer="result") == 0
    text = generate_latest(registry).decode()
    assert "# TYPE tenfold_cache_requests_total counter" in text
    assert "# TYPE tenfold_cache_entries gauge" in text

    emb = stack.embedding("embed", "1")
    assert emb is not None and stack.embedding("embed", "1") is emb
    await emb.embed_many(["x", "y"], lambda items: [[1.0, 2.0] for _ in items])
    await emb.embed_many(["x"], lambda items: [[9.0, 9.0] for _ in items])
    assert sample(registry, "tenfold_cache_requests_total", layer="embedding", result="hit") == 1
    assert sample(registry, "tenfold_cache_entries", layer="embedding") == 2
    # Each layer gets its own bounded store.
    features = stack.backend("features")
    assert isinstance(features, ResilientBackend) and isinstance(features.inner, MemoryBackend)
    assert features is stack.backend("features")
    await stack.close()


def test_snapshot_prices_saved_model_time() -> None:
    stack = CacheStack.from_url("memory://")
    assert stack.result is not None
    stats = stack.result.stats
    stats.count(Outcome.HIT, 30)
    stats.count(Outcome.COALESCED, 10)
    stats.count(Outcome.MISS, 60)
    stats.count(Outcome.BYPASS, 5)
    stats.add_compute(6.0, 60)  # measured by the layer: 0.1 s per item
    own = stack.stats(usd_per_gpu_hour=3.6)["layers"]["result"]
    assert own["hit_ratio"] == pytest.approx(0.4)
    assert own["seconds_per_item"] == pytest.approx(0.1)
    assert own["model_seconds_saved"] == pytest.approx(4.0)
    assert own["usd_saved"] == pytest.approx(0.004)
    assert own["entries"] == 0
    given = stack.stats(s_per_item={"result": 0.5}, usd_per_gpu_hour=1.006)["layers"]["result"]
    assert given["model_seconds_saved"] == pytest.approx(20.0)
    assert given["usd_saved"] == pytest.approx(20.0 / 3600 * 1.006)
    assert LayerStats("x").snapshot()["hit_ratio"] == 0.0
    assert LayerStats("x").snapshot()["model_seconds_saved"] == 0.0
    with pytest.raises(ValueError):
        usd_saved(1.0, -1.0)


@pytest.mark.redis
async def test_stack_on_a_dead_redis_serves_and_counts_errors() -> None:
    registry = CollectorRegistry()
    url = f"redis://:secret@127.0.0.1:{free_port()}/0?timeout_ms=100"
    stack = CacheStack.from_url(url, registry=registry, clock=FakeClock())
    assert stack.result is not None

    async def compute() -> str:
        return "ok"

    res = await stack.result.get_or_compute(model="m", version="1", input=1, compute=compute)
    assert (res.value, res.header) == ("ok", "miss")
    assert sample(registry, "tenfold_cache_errors_total", layer="result") == 1
    # Size families exist only for in-process stores.
    assert sample(registry, "tenfold_cache_entries", layer="result") is None
    assert await stack.result.purge_model("m") is None  # failed purge is reported, not raised
    snap = stack.stats()
    assert snap["backend"] == f"redis://***@127.0.0.1:{url.split(':')[3]}"
    assert snap["layers"]["result"]["errors"] == 2
    await stack.close()


@pytest.mark.redis
async def test_stack_on_redis_shares_the_server_under_prefixes() -> None:
    ns = unique_prefix().replace(":", "-").rstrip("-")
    settings = CacheSettings(result=ResultCacheConfig(ttl_s=60), namespace=ns)
    stack = CacheStack.from_url("redis://127.0.0.1:6379/0", settings=settings)
    assert stack.result is not None
    assert stack.result.config.namespace == ns
    assert stack.result.config.ttl_s == 60

    async def compute() -> int:
        return 7

    first = await stack.result.get_or_compute(model="m", version="1", input=1, compute=compute)
    again = await stack.result.get_or_compute(model="m", version="1", input=1, compute=compute)
    assert (first.outcome, again.outcome) == (Outcome.MISS, Outcome.HIT)
    assert await stack.result.purge_model("m") == 1
    await stack.close()


def test_disabled_stack_has_no_layers() -> None:
    registry = CollectorRegistry()
    stack = CacheStack.disabled(registry=registry)
    assert not stack.enabled
    assert stack.result is None
    assert stack.embedding("embed", "1") is None
    assert stack.backend("features") is None
    assert stack.stats() == {"enabled": False, "backend": None, "layers": {}}
    assert sample(registry, "tenfold_cache_requests_total", layer="result", result="hit") is None


def test_bad_url_fails_at_startup() -> None:
    with pytest.raises(InvalidCacheURL, match="unknown cache URL scheme"):
        CacheStack.from_url("memcache://localhost")
    with pytest.raises(ValueError, match="embedding_ttl_s"):
        CacheSettings(embedding_ttl_s=0)


async def test_stack_purge_model_covers_results_and_embeddings() -> None:
    stack = CacheStack.from_url("memory://")
    assert stack.result is not None
    emb = stack.embedding("embed", "1")
    other = stack.embedding("other", "1")
    assert emb is not None and other is not None

    async def compute() -> int:
        return 1

    for x in range(3):
        await stack.result.get_or_compute(model="embed", version="1", input=x, compute=compute)
    await emb.embed_many(["a", "b"], lambda items: [[1.0] for _ in items])
    await other.embed_many(["a"], lambda items: [[1.0] for _ in items])
    assert await stack.purge_model("embed") == {"result": 3, "embedding": 2}
    assert await stack.purge_model("embed") == {"result": 0, "embedding": 0}
    assert await CacheStack.disabled().purge_model("embed") == {}
    await stack.close()


@pytest.mark.redis
async def test_purge_from_a_process_that_never_embedded_drops_shared_embeddings() -> None:
    settings = CacheSettings(namespace=unique_prefix().replace(":", "-").rstrip("-"))
    url = "redis://127.0.0.1:6379/0?timeout_ms=1000"
    serving = CacheStack.from_url(url, settings=settings)
    purging = CacheStack.from_url(url, settings=settings)  # another process, fresh
    emb = serving.embedding("vec", "1")
    assert emb is not None
    calls: list[list[str]] = []

    def encode(items: list[str]) -> list[list[float]]:
        calls.append(items)
        return [[1.0, 2.0] for _ in items]

    try:
        await emb.embed_many(["hello", "world"], encode)
        assert await purging.purge_model("vec") == {"result": 0, "embedding": 2}
        await emb.embed_many(["hello"], encode)
        assert calls == [["hello", "world"], ["hello"]]  # purged for the serving process too
    finally:
        backend = purging.backend("embedding")
        assert backend is not None
        await backend.delete_prefix(settings.namespace + ":")
        await serving.close()
        await purging.close()
