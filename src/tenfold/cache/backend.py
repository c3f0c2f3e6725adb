"""The cache backend protocol and the one place that picks a backend from a URL.

Every cache layer (result, embedding, index, features) talks to a backend
through four async calls. Values are opaque ``bytes``; keys are ``str``. A
backend may forget any entry at any time (eviction, TTL, restart), so callers
treat every ``None`` as "compute it".

Backends raise :class:`tenfold.errors.CacheUnavailable` when their store fails;
:class:`tenfold.cache.resilient.ResilientBackend` turns that into misses and
no-ops so that a cache outage never reaches a client.

Call forms::

    backend = from_url("memory://?max_entries=100000&max_bytes=268435456")
    backend = from_url("redis://127.0.0.1:6379/0?timeout_ms=100")
    values = await backend.get_many(["a", "b"])        # [b"...", None]
    await backend.set_many({"a": b"..."}, ttl_s=300.0)
    removed = await backend.delete_prefix("tenfold:r:v1:embed:")
    await backend.close()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from tenfold.clock import Clock, SystemClock

__all__ = ["SCHEMES", "CacheBackend", "InvalidCacheURL", "from_url"]

SCHEMES = ("memory", "redis")


@runtime_checkable
class CacheBackend(Protocol):
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in the order of ``keys``; ``None`` for a miss or an expired entry."""
        ...

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        """Store every item with the same time to live (seconds, > 0)."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key that starts with ``prefix``; return how many were deleted."""
        ...

    async def close(self) -> None: ...


class InvalidCacheURL(ValueError):
    """A cache URL that names an unknown scheme or carries a bad parameter."""


def _one_param(query: Mapping[str, list[str]], name: str, url: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidCacheURL(f"cache URL {url!r}: parameter {name!r} given more than once")
    return values[0]


def _positive_int(query: Mapping[str, list[str]], name: str, url: str) -> int | None:
    raw = _one_param(query, name, url)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        msg = f"cache URL {url!r}: {name} must be an integer, got {raw!r}"
        raise InvalidCacheURL(msg) from None
    if value <= 0:
        raise InvalidCacheURL(f"cache URL {url!r}: {name} must be > 0, got {value}")
    return value


def _check_known(query: Mapping[str, list[str]], known: set[str], url: str) -> None:
    unknown = sorted(set(query) - known)
    if unknown:
        raise InvalidCacheURL(
            f"cache URL {url!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )


def from_url(url: str, *, clock: Clock | None = None) -> CacheBackend:
    """Build a raw backend from ``url``.

    * ``memory://?max_entries=N&max_bytes=N`` (defaults 100_000 entries, 256 MiB);
      ``clock`` decides TTL expiry (tests pass a ``FakeClock``).
    * ``redis://[user:pass@]host:port/db?timeout_ms=N`` (default 100 ms socket and
      connect timeouts); Redis keeps its own TTL clock. With ``near_cache_s=S``
      (and ``near_max_entries=N``, default 10,000; 64 MiB) a
      :class:`~tenfold.cache.near.NearCacheBackend` keeps what it reads or writes in
      process for S seconds (``clock`` drives that copy's TTL).

    Anything else raises :class:`InvalidCacheURL`.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query, keep_blank_values=True)
    if scheme == "memory":
        from tenfold.cache.memory import MemoryBackend, MemoryConfig

        _check_known(query, {"max_entries", "max_bytes"}, url)
        defaults = MemoryConfig()
        config = MemoryConfig(
            max_entries=_positive_int(query, "max_entries", url) or defaults.max_entries,
            max_bytes=_positive_int(query, "max_bytes", url) or defaults.max_bytes,
        )
        return MemoryBackend(config, clock=clock or SystemClock())
    if scheme in ("redis", "rediss"):
        from tenfold.cache.redis import DEFAULT_TIMEOUT_MS, RedisBackend, RedisConfig

        _check_known(query, {"timeout_ms", "near_cache_s", "near_max_entries"}, url)
        timeout_ms = _positive_int(query, "timeout_ms", url) or DEFAULT_TIMEOUT_MS
        # redis-py reads host, port, db and credentials from the URL; our own
        # parameters are stripped so it never sees them.
        redis_url = parts._replace(query="").geturl()
        if not parts.hostname:
            raise InvalidCacheURL(f"cache URL {url!r}: redis URL needs a host")
        remote = RedisBackend(RedisConfig(url=redis_url, timeout_ms=timeout_ms))
        near_s = _positive_int(query, "near_cache_s", url)
        near_entries = _positive_int(query, "near_max_entries", url)
        if near_s is None:
            if near_entries is not None:
                raise InvalidCacheURL(f"cache URL {url!r}: near_max_entries needs near_cache_s")
            return remote
        from tenfold.cache.memory import MemoryBackend, MemoryConfig
        from tenfold.cache.near import NearCacheBackend

        local = MemoryBackend(
            MemoryConfig(max_entries=near_entries or 10_000, max_bytes=64 * 1024 * 1024),
            clock=clock or SystemClock(),
        )
        return NearCacheBackend(local, remote, ttl_s=float(near_s))
    raise InvalidCacheURL(
        f"unknown cache URL scheme {parts.scheme!r} in {url!r}; "
        "use memory://?max_entries=N&max_bytes=N or redis://host:port/db"
    )
