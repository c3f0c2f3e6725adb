"""A near cache: a small in-process LRU in front of a shared backend (Redis).

``redis://host:6379/0?near_cache_s=30`` keeps every value read from or written to Redis
in this process for up to ``near_cache_s`` seconds as well, so a hot key costs a dict
lookup instead of a network round trip, and Redis sees one read per key and process per
``near_cache_s`` instead of one per request. Entries are never written anywhere but
through :meth:`set_many`, and tenfold's keys name the model version and the exact input,
so a cached value never goes wrong; the price is bounded staleness of *removals*: after
a purge (``DELETE /v1/cache``) or an expiry in Redis, another process may serve its near
copy for up to ``near_cache_s`` more. The purging process drops its own copies at once,
and a read or write that overlaps a purge does not keep a local copy (it could hold a
value the purge deleted from Redis after the read).

A local copy never outlives the entry's own TTL: writes know it, and reads take the
remaining TTL from the same round trip (:meth:`RedisBackend.get_many_with_ttl
<tenfold.cache.redis.RedisBackend.get_many_with_ttl>`). Over a remote without that
call, a read is kept for ``near_cache_s``.

Hand-written because it is a dozen lines over two backends we already have; Redis 6's
server-assisted client-side caching (``CLIENT TRACKING``) would remove the staleness but
redis-py supports it only on its synchronous RESP3 client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from tenfold.cache.backend import CacheBackend
from tenfold.cache.memory import MemoryBackend

__all__ = ["NearCacheBackend", "TTLReader"]


@runtime_checkable
class TTLReader(Protocol):
    async def get_many_with_ttl(
        self, keys: Sequence[str]
    ) -> list[tuple[bytes | None, float | None]]:
        """``(value, remaining seconds or None for no expiry)`` per key, in one round trip."""
        ...


class NearCacheBackend:
    """``NearCacheBackend(MemoryBackend(MemoryConfig(max_entries=10_000)), redis, ttl_s=30)``."""

    def __init__(self, local: MemoryBackend, remote: CacheBackend, *, ttl_s: float) -> None:
        if not ttl_s > 0:
            raise ValueError(f"near cache ttl_s must be > 0, got {ttl_s}")
        self.local = local
        self.remote = remote
        self.ttl_s = ttl_s
        self._ttl_reader: TTLReader | None = remote if isinstance(remote, TTLReader) else None
        # A read or write may keep a local copy only if no purge ran while it was out:
        # none in progress when it lands, and none finished since it started.
        self._purging = 0
        self._purges_done = 0

    def _no_purge_since(self, mark: int) -> bool:
        return self._purging == 0 and self._purges_done == mark

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self.local.get_many(keys)
        missing = sorted({k for k, v in zip(keys, values, strict=True) if v is None})
        if not missing:
            return values
        mark = self._purges_done
        if self._ttl_reader is not None:
            pairs = await self._ttl_reader.get_many_with_ttl(missing)
        else:
            pairs = [(v, None) for v in await self.remote.get_many(missing)]
        fetched = {k: v for k, (v, _) in zip(missing, pairs, strict=True)}
        if self._no_purge_since(mark):
            # Grouped by local TTL: the near ttl, capped by what the entry has left.
            keep: dict[float, dict[str, bytes]] = {}
            for key, (value, remaining) in zip(missing, pairs, strict=True):
                ttl = self.ttl_s if remaining is None else min(self.ttl_s, remaining)
                if value is not None and ttl > 0:
                    keep.setdefault(ttl, {})[key] = value
            for ttl, items in keep.items():
                await self.local.set_many(items, ttl)
        return [v if v is not None else fetched[k] for k, v in zip(keys, values, strict=True)]

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        mark = self._purges_done
        await self.remote.set_many(items, ttl_s)  # raises first: nothing kept locally then
        if self._no_purge_since(mark):
            await self.local.set_many(items, min(ttl_s, self.ttl_s))

    async def delete_prefix(self, prefix: str) -> int:
        self._purging += 1
        try:
            await self.local.delete_prefix(prefix)
            return await self.remote.delete_prefix(prefix)
        finally:
            self._purging -= 1
            self._purges_done += 1

    async def close(self) -> None:
        await self.local.close()
        await self.remote.close()
