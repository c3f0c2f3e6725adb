"""One contract suite for every cache backend (memory and the real Redis at 127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest
import redis.asyncio

from cache_support import MAIN_REDIS_URL, unique_prefix
from tenfold.cache import CacheBackend, InvalidCacheURL, MemoryBackend, MemoryConfig, from_url
from tenfold.cache.memory import entry_size
from tenfold.cache.near import NearCacheBackend
from tenfold.cache.redis import RedisBackend
from tenfold.clock import FakeClock
from tenfold.errors import CacheUnavailable


@dataclass
class Harness:
    backend: CacheBackend
    prefix: str
    # Let ``seconds`` of cache time pass: the fake clock for memory, real time for Redis.
    wait: Callable[[float], Awaitable[None]]
    # TTL short enough to wait out: Redis expiry needs real time.
    short_ttl_s: float

    def k(self, name: str) -> str:
        return self.prefix + name


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-near", marks=pytest.mark.redis),
    ]
)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    prefix = unique_prefix()
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        backend = from_url("memory://?max_entries=10000&max_bytes=100000000", clock=clock)
        yield Harness(backend, prefix, advance, short_ttl_s=5.0)
        await backend.close()
    else:
        near = "&near_cache_s=30" if request.param == "redis-near" else ""
        backend = from_url(MAIN_REDIS_URL + "?timeout_ms=1000" + near)
        try:
            yield Harness(backend, prefix, asyncio.sleep, short_ttl_s=0.1)
        finally:
            await backend.delete_prefix(prefix)
            await backend.close()


async def test_binary_values_round_trip(harness: Harness) -> None:
    values = {
        harness.k("all-bytes"): bytes(range(256)),
        harness.k("nul"): b"\x00\x00\xff\xfe",
        harness.k("empty"): b"",
        harness.k("big"): bytes(range(256)) * 4096,
    }
    await harness.backend.set_many(values, ttl_s=60)
    got = await harness.backend.get_many(list(values))
    assert got == list(values.values())
    assert all(isinstance(v, bytes) for v in got)


async def test_get_many_keeps_order_with_misses_and_repeats(harness: Harness) -> None:
    await harness.backend.set_many({harness.k("a"): b"A", harness.k("c"): b"C"}, ttl_s=60)
    keys = [harness.k(n) for n in ("c", "missing", "a", "c", "b")]
    assert await harness.backend.get_many(keys) == [b"C", None, b"A", b"C", None]
    assert await harness.backend.get_many([]) == []


async def test_concurrent_callers_each_get_their_own_answers(harness: Harness) -> None:
    """Calls made together (Redis sends them in shared round trips) answer as if alone."""
    b = harness.backend
    writes = [{harness.k(f"w{i}:{j}"): b"%d.%d" % (i, j) for j in range(i % 4)} for i in range(40)]
    ttls = [60.0 if i % 2 else harness.short_ttl_s for i in range(40)]
    await asyncio.gather(*(b.set_many(w, ttl_s=t) for w, t in zip(writes, ttls, strict=True)))
    lookups = [[*w, harness.k(f"none{i}")] for i, w in enumerate(writes)]
    got = await asyncio.gather(*(b.get_many(keys) for keys in lookups))
    assert got == [[*w.values(), None] for w in writes]
    await harness.wait(harness.short_ttl_s * 2.5)
    got = await asyncio.gather(*(b.get_many(list(w)) for w in writes))
    assert got == [list(w.values()) if i % 2 else [None] * len(w) for i, w in enumerate(writes)]


async def test_set_overwrites_value_and_ttl(harness: Harness) -> None:
    key = harness.k("x")
    await harness.backend.set_many({key: b"old"}, ttl_s=harness.short_ttl_s)
    await harness.backend.set_many({key: b"new"}, ttl_s=3600)
    await harness.wait(harness.short_ttl_s * 2.5)
    assert await harness.backend.get_many([key]) == [b"new"]


async def test_ttl_expiry(harness: Harness) -> None:
    short, long = harness.k("short"), harness.k("long")
    await harness.backend.set_many({short: b"s"}, ttl_s=harness.short_ttl_s)
    await harness.backend.set_many({long: b"l"}, ttl_s=3600)
    assert await harness.backend.get_many([short, long]) == [b"s", b"l"]
    await harness.wait(harness.short_ttl_s * 2.5)
    assert await harness.backend.get_many([short, long]) == [None, b"l"]


async def test_ttl_must_be_positive(harness: Harness) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        await harness.backend.set_many({harness.k("x"): b"x"}, ttl_s=0)


async def test_delete_prefix_deletes_exactly_the_prefix(harness: Harness) -> None:
    # Glob metacharacters in the prefix must match literally on Redis.
    inside = {harness.k(f"m*[a]?:{i}"): b"1" for i in range(1200)}
    outside = {harness.k("m*[a]"): b"2", harness.k("other:1"): b"3", harness.k("mXaY:1"): b"4"}
    await harness.backend.set_many({**inside, **outside}, ttl_s=60)
    removed = await harness.backend.delete_prefix(harness.k("m*[a]?:"))
    assert removed == len(inside)
    assert await harness.backend.get_many(list(inside)[:5]) == [None] * 5
    assert await harness.backend.get_many(list(outside)) == list(outside.values())
    assert await harness.backend.delete_prefix(harness.k("m*[a]?:")) == 0


# --- memory only: bounds and LRU -------------------------------------------------------


async def test_memory_lru_bound_by_entries() -> None:
    clock = FakeClock()
    backend = from_url("memory://?max_entries=3", clock=clock)
    assert isinstance(backend, MemoryBackend)
    await backend.set_many({"a": b"1", "b": b"2", "c": b"3"}, ttl_s=60)
    assert await backend.get_many(["a"]) == [b"1"]  # a is now most recently used
    await backend.set_many({"d": b"4"}, ttl_s=60)
    assert await backend.get_many(["a", "b", "c", "d"]) == [b"1", None, b"3", b"4"]
    assert backend.entries == 3
    assert backend.evictions == 1


async def test_memory_lru_bound_by_bytes() -> None:
    value = b"v" * 1000
    one = entry_size("k0", value)
    backend = MemoryBackend(MemoryConfig(max_entries=1000, max_bytes=one * 3), clock=FakeClock())
    await backend.set_many({"k0": value, "k1": value, "k2": value}, ttl_s=60)
    assert backend.bytes_used == one * 3
    await backend.get_many(["k0"])
    await backend.set_many({"k3": value}, ttl_s=60)
    assert await backend.get_many(["k0", "k1", "k2", "k3"]) == [value, None, value, value]
    assert backend.bytes_used == one * 3
    assert backend.evictions == 1
    # One entry larger than the whole budget is refused rather than flushing the cache.
    await backend.set_many({"huge": b"x" * (one * 4)}, ttl_s=60)
    assert await backend.get_many(["huge", "k0"]) == [None, value]
    assert backend.rejected == 1


async def test_memory_expired_entries_leave_the_counts() -> None:
    clock = FakeClock()
    backend = MemoryBackend(MemoryConfig(max_entries=10, max_bytes=10**6), clock=clock)
    await backend.set_many({"a": b"x" * 100}, ttl_s=1.0)
    clock.advance(0.999)
    assert await backend.get_many(["a"]) == [b"x" * 100]
    clock.advance(0.001)
    assert await backend.get_many(["a"]) == [None]
    assert (backend.entries, backend.bytes_used, backend.expirations) == (0, 0, 1)
    assert backend.evictions == 0


# --- from_url ----------------------------------------------------------------------------


def test_from_url_memory_reads_bounds() -> None:
    backend = from_url("memory://?max_entries=7&max_bytes=4096")
    assert isinstance(backend, MemoryBackend)
    assert (backend.config.max_entries, backend.config.max_bytes) == (7, 4096)
    default = from_url("memory://")
    assert isinstance(default, MemoryBackend)
    assert default.config.max_entries == 100_000


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memcached://127.0.0.1:11211", "unknown cache URL scheme 'memcached'"),
        ("127.0.0.1:6379", "unknown cache URL scheme"),
        ("memory://?max_entries=0", "max_entries must be > 0"),
        ("memory://?max_bytes=lots", "max_bytes must be an integer"),
        ("memory://?max_entries=1&max_entries=2", "more than once"),
        ("memory://?maxentries=5", "unknown parameter"),
        ("redis:///0", "needs a host"),
        ("redis://127.0.0.1:6379/0?timeout_ms=-1", "timeout_ms must be > 0"),
    ],
)
def test_from_url_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidCacheURL, match=message):
        from_url(url)


@pytest.mark.redis
async def test_from_url_redis_has_bounded_timeouts() -> None:
    from tenfold.cache.redis import RedisBackend

    backend = from_url("redis://127.0.0.1:6379/0?timeout_ms=250")
    assert isinstance(backend, RedisBackend)
    assert backend.config.timeout_ms == 250
    assert backend.config.url == "redis://127.0.0.1:6379/0"
    await backend.close()


@pytest.mark.redis
async def test_near_cache_serves_hot_keys_locally_and_bounds_staleness() -> None:
    """Two processes' near caches over one Redis: reads are local after the first, and a
    purge by one is seen by the other within near_cache_s (its local copy expires)."""
    prefix = unique_prefix()
    clock = FakeClock()
    url = MAIN_REDIS_URL + "?timeout_ms=1000&near_cache_s=5&near_max_entries=100"
    a, b = from_url(url, clock=clock), from_url(url, clock=clock)
    assert isinstance(a, NearCacheBackend) and isinstance(b, NearCacheBackend)
    key = prefix + "k"
    try:
        await a.set_many({key: b"v"}, ttl_s=60)
        assert await b.get_many([key, prefix + "none"]) == [b"v", None]
        assert await b.local.get_many([key]) == [b"v"]  # kept near
        assert await a.delete_prefix(prefix) == 1
        assert await a.get_many([key]) == [None]  # the purging process: at once
        assert await b.get_many([key]) == [b"v"]  # the other: its copy, for now
        clock.advance(5.01)
        assert await b.get_many([key]) == [None]  # within near_cache_s
        # A short TTL is not stretched by the near copy.
        await a.set_many({key: b"w"}, ttl_s=1)
        clock.advance(1.01)
        assert await a.local.get_many([key]) == [None]
    finally:
        await a.delete_prefix(prefix)
        await a.close()
        await b.close()


def test_near_cache_url_parameters() -> None:
    with pytest.raises(InvalidCacheURL, match="near_max_entries needs near_cache_s"):
        from_url("redis://127.0.0.1:6379/0?near_max_entries=10")
    with pytest.raises(InvalidCacheURL, match="near_cache_s must be > 0"):
        from_url("redis://127.0.0.1:6379/0?near_cache_s=0")


class GatedMemory(MemoryBackend):
    """A remote that can be held mid-read (after reading) and mid-purge (before deleting)."""

    def __init__(self) -> None:
        super().__init__(clock=FakeClock())
        self.hold_reads = False
        self.reading, self.release_read = asyncio.Event(), asyncio.Event()
        self.purging, self.release_purge = asyncio.Event(), asyncio.Event()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await super().get_many(keys)
        if self.hold_reads:
            self.reading.set()
            await self.release_read.wait()
        return values

    async def delete_prefix(self, prefix: str) -> int:
        self.purging.set()
        await self.release_purge.wait()
        return await super().delete_prefix(prefix)


async def test_near_cache_keeps_nothing_a_purge_may_have_deleted() -> None:
    remote = GatedMemory()
    near = NearCacheBackend(MemoryBackend(clock=FakeClock()), remote, ttl_s=30)
    await remote.set_many({"p:k": b"old"}, ttl_s=60)
    # A read while the remote delete is still walking the keys: not kept locally.
    purge = asyncio.create_task(near.delete_prefix("p:"))
    await remote.purging.wait()
    assert await near.get_many(["p:k"]) == [b"old"]
    remote.release_purge.set()
    assert await purge == 1
    assert await near.get_many(["p:k"]) == [None]
    # A read that fetched before a purge and lands after it: not kept either.
    await remote.set_many({"p:k": b"old"}, ttl_s=60)
    remote.hold_reads = True
    read = asyncio.create_task(near.get_many(["p:k"]))
    await remote.reading.wait()
    assert await near.delete_prefix("p:") == 1
    remote.release_read.set()
    assert await read == [b"old"]
    remote.hold_reads = False
    assert await near.get_many(["p:k"]) == [None]
    assert await near.local.get_many(["p:k"]) == [None]


@pytest.mark.redis
async def test_near_copy_of_a_read_never_outlives_the_entry() -> None:
    prefix = unique_prefix()
    clock = FakeClock()
    url = MAIN_REDIS_URL + "?timeout_ms=1000&near_cache_s=30"
    writer, reader = from_url(url, clock=clock), from_url(url, clock=clock)
    assert isinstance(writer, NearCacheBackend) and isinstance(reader, NearCacheBackend)
    short, forever = prefix + "short", prefix + "forever"
    client = redis.asyncio.Redis.from_url(MAIN_REDIS_URL)
    try:
        await writer.set_many({short: b"s"}, ttl_s=2)
        await client.set(forever, b"f")  # no TTL at all: the near ttl bounds it
        assert await reader.get_many([short, forever, prefix + "none"]) == [b"s", b"f", None]
        clock.advance(2.01)
        assert await reader.local.get_many([short, forever]) == [None, b"f"]
        clock.advance(28)
        assert await reader.local.get_many([forever]) == [None]
        pairs = await reader.remote.get_many_with_ttl([forever, prefix + "none"])  # type: ignore[attr-defined]
        assert pairs == [(b"f", None), (None, 0.0)]
    finally:
        await client.aclose()
        await writer.delete_prefix(prefix)
        await writer.close()
        await reader.close()


@pytest.mark.redis
async def test_redis_calls_made_together_share_round_trips() -> None:
    prefix = unique_prefix()
    backend = from_url(MAIN_REDIS_URL + "?timeout_ms=1000")
    assert isinstance(backend, RedisBackend)
    try:
        keys = [f"{prefix}{i}" for i in range(64)]
        await asyncio.gather(*(backend.set_many({k: k.encode()}, ttl_s=60) for k in keys))
        trips = backend.round_trips
        got = await asyncio.gather(*(backend.get_many([k]) for k in keys))
        assert got == [[k.encode()] for k in keys]
        # the first alone, the rest together (at most a few round trips, not 64)
        assert backend.round_trips - trips <= 4
        pairs = await asyncio.gather(*(backend.get_many_with_ttl([k]) for k in keys[:8]))
        assert [p[0][0] for p in pairs] == [k.encode() for k in keys[:8]]
        assert all(0 < (p[0][1] or 0) <= 60 for p in pairs)
    finally:
        await backend.delete_prefix(prefix)
        await backend.close()
    with pytest.raises(CacheUnavailable, match="closed"):
        await backend.get_many([prefix + "x"])


@pytest.mark.redis
async def test_redis_shared_round_trips_stay_within_the_timeout() -> None:
    """256 lookups of 64 embeddings each (768 floats, 3 KB) at once: in one MGET (48 MiB) the
    reply outlasted the 100 ms timeout and all but one failed; round trips carry at most
    ROUND_TRIP_KEYS keys, so each call gets its values."""
    prefix = unique_prefix()
    backend = from_url(MAIN_REDIS_URL + "?timeout_ms=100")
    assert isinstance(backend, RedisBackend)
    value = bytes(3072)
    keys = [f"{prefix}{i}" for i in range(64 * 4)]
    try:
        await backend.set_many(dict.fromkeys(keys, value), ttl_s=60)
        calls = [[keys[(i + j) % len(keys)] for j in range(64)] for i in range(256)]
        trips = backend.round_trips
        got = await asyncio.gather(*(backend.get_many(c) for c in calls))
        assert all(g == [value] * 64 for g in got)
        # 64 keys a call, ROUND_TRIP_KEYS (256) keys a round trip: about 64 round trips
        assert 60 <= backend.round_trips - trips <= 70
        with pytest.raises(TypeError, match="bytes"):
            await backend.set_many({prefix + "s": "text"}, ttl_s=60)  # type: ignore[dict-item]
    finally:
        await backend.delete_prefix(prefix)
        await backend.close()
