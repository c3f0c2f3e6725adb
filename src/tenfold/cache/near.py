"""A near cache: a small in-process LRU in front of a shared backend (Redis).

``redis://host:6379/0?near_cache_s=30`` keeps every value read from or written to Redis
in this process for up to ``near_cache_s`` seconds as well, so a hot key costs a dict
lookup instead of a network round trip, and Redis sees one read per key and process per
``near_cache_s`` instead of one per request. Entries are never written anywhere but
through :meth:`set_many`, and tenfold's keys name the model version and the exact input,
so a cached value never goes wrong; the price is bounded staleness of *removals*: after
a purge (``DELETE /v1/cache``) or an expiry in Redis, another process may serve its near
copy for up to ``near_cache_s`` more. The purging process drops its own copies at once.

Hand-written because it is a dozen lines over two backends we already have; Redis 6's
server-assisted client-side caching (``CLIENT TRACKING``) would remove the staleness but
redis-py supports it only on its synchronous RESP3 client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tenfold.cache.backend import CacheBackend
from tenfold.cache.memory import MemoryBackend

__all__ = ["NearCacheBackend"]


class NearCacheBackend:
    """``NearCacheBackend(MemoryBackend(MemoryConfig(max_entries=10_000)), redis, ttl_s=30)``."""

    def __init__(self, local: MemoryBackend, remote: CacheBackend, *, ttl_s: float) -> None:
        if not ttl_s > 0:
            raise ValueError(f"near cache ttl_s must be > 0, got {ttl_s}")
        self.local = local
        self.remote = remote
        self.ttl_s = ttl_s

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self.local.get_many(keys)
        missing = sorted({k for k, v in zip(keys, values, strict=True) if v is None})
        if not missing:
            return values
        fetched = dict(zip(missing, await self.remote.get_many(missing), strict=True))
        found = {k: v for k, v in fetched.items() if v is not None}
        if found:
            await self.local.set_many(found, self.ttl_s)
        return [v if v is not None else fetched[k] for k, v in zip(keys, values, strict=True)]

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        await self.remote.set_many(items, ttl_s)  # raises first: nothing kept locally then
        await self.local.set_many(items, min(ttl_s, self.ttl_s))

    async def delete_prefix(self, prefix: str) -> int:
        await self.local.delete_prefix(prefix)
        return await self.remote.delete_prefix(prefix)

    async def close(self) -> None:
        await self.local.close()
        await self.remote.close()
