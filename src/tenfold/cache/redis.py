"""Redis cache backend (redis-py asyncio).

Concurrent calls share round trips (:class:`tenfold.roundtrips.RoundTripBatcher`): a call
made while nothing is in flight goes out at once; calls made while one is in flight go out
together next, as one MGET for every key of every waiting ``get_many``, one script call for
``get_many_with_ttl`` (GET and PTTL of each key, which the near cache uses), one
non-transactional pipeline of ``SET key value PX ttl`` for ``set_many``. Gets and sets
batch apart, so a set and a get made concurrently are not ordered (as before, on separate
pooled connections); a call awaited before the next is. ``delete_prefix`` walks SCAN and
UNLINKs in chunks (UNLINK frees memory off the main thread). A shared round trip carries
at most :data:`ROUND_TRIP_KEYS` keys. Values are binary (no decoding). Socket and connect
timeouts are short and redis-py's own retries are off, so an outage costs each round trip one
bounded wait, never a stall (a call waits for the round trips ahead of it too: the resilient
wrapper's ``op_timeout_s`` bounds the total); every Redis or socket error leaves as
:class:`tenfold.errors.CacheUnavailable`, to every caller of the failed round trip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tenfold.errors import CacheUnavailable
from tenfold.roundtrips import BatcherClosed, RoundTripBatcher

__all__ = ["DEFAULT_TIMEOUT_MS", "RedisBackend", "RedisConfig", "glob_escape"]

DEFAULT_TIMEOUT_MS = 100
SCAN_COUNT = 1000
UNLINK_CHUNK = 500
#: Keys per shared round trip: 256 values of 3 KB (a 768-float embedding) is under 1 MB,
#: a few ms on loopback; 256 lookups of 64 such keys in one MGET outlasted a 100 ms timeout.
ROUND_TRIP_KEYS = 256

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    def __post_init__(self) -> None:
        if self.timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0, got {self.timeout_ms}")


def glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so that ``text`` matches literally in SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _ttl_ms(ttl_s: float) -> int:
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
    return max(1, round(ttl_s * 1000))


# Value and remaining TTL of each key, flattened: [v1, pttl1, v2, pttl2, ...] (a missing
# value is false in Lua, nil in the reply, so the array keeps its length).
_GET_WITH_TTL = """
local out = {}
for i, key in ipairs(KEYS) do
  out[2 * i - 1] = redis.call('GET', key)
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""


class RedisBackend:
    """``RedisBackend(RedisConfig("redis://127.0.0.1:6379/0", timeout_ms=100))``."""

    def __init__(self, config: RedisConfig | None = None) -> None:
        self.config = config or RedisConfig()
        timeout_s = self.config.timeout_ms / 1000
        # Connecting is lazy: building the backend does no I/O.
        self._client = aioredis.Redis.from_url(
            self.config.url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        self._get_with_ttl: Any = None  # registered on first use (no I/O here)
        # Each round trip carries at most ROUND_TRIP_KEYS keys (a call with more goes alone).
        self._gets: RoundTripBatcher[Sequence[str], list[bytes | None]] = RoundTripBatcher(
            self._mget,
            failure=self._failure("get_many"),
            name="tenfold-cache-get",
            max_weight=ROUND_TRIP_KEYS,
            weight=len,
        )
        self._gets_with_ttl: RoundTripBatcher[
            Sequence[str], list[tuple[bytes | None, float | None]]
        ] = RoundTripBatcher(
            self._mget_with_ttl,
            failure=self._failure("get_many_with_ttl"),
            name="tenfold-cache-get-ttl",
            max_weight=ROUND_TRIP_KEYS,
            weight=len,
        )
        self._sets: RoundTripBatcher[tuple[Mapping[str, bytes], int], None] = RoundTripBatcher(
            self._set_pipeline,
            failure=self._failure("set_many"),
            name="tenfold-cache-set",
            max_weight=ROUND_TRIP_KEYS,
            weight=lambda call: len(call[0]),
        )

    @property
    def round_trips(self) -> int:
        """Get, get-with-TTL and set round trips made so far, for tests and curiosity."""
        return sum(b.round_trips for b in (self._gets, self._gets_with_ttl, self._sets))

    def _unavailable(self, op: str, exc: BaseException) -> CacheUnavailable:
        if isinstance(exc, BatcherClosed):
            return CacheUnavailable(
                f"redis cache {op}: the backend is closed", details={"backend": "redis", "op": op}
            )
        return CacheUnavailable(
            f"redis cache {op} failed: {type(exc).__name__}: {exc}",
            details={"backend": "redis", "op": op},
        )

    def _failure(self, op: str) -> Callable[[Exception], Exception]:
        return lambda exc: self._unavailable(op, exc)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return await self._gets.call(keys)

    async def get_many_with_ttl(
        self, keys: Sequence[str]
    ) -> list[tuple[bytes | None, float | None]]:
        """``(value, remaining TTL in seconds or None for no expiry)`` per key, in one round
        trip: one script reads GET and PTTL of each key together (atomic, so each TTL is its
        value's; a MULTI of MGET + N PTTLs cost up to 6x the client CPU of one MGET)."""
        if not keys:
            return []
        return await self._gets_with_ttl.call(keys)

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        # Checked here, not in the shared round trip: a bad call fails alone.
        ttl_ms = _ttl_ms(ttl_s)
        if not items:
            return
        for key, value in items.items():
            if not isinstance(value, bytes):
                raise TypeError(f"cache values are bytes; {key!r} has {type(value).__name__}")
        await self._sets.call((items, ttl_ms))

    async def _mget(self, calls: list[Sequence[str]]) -> list[list[bytes | None]]:
        values = await self._client.mget([key for keys in calls for key in keys])
        # decode_responses=False: every non-nil reply is bytes.
        flat = [v if v is None or isinstance(v, bytes) else v.encode() for v in values]
        return _split(flat, calls)

    async def _mget_with_ttl(
        self, calls: list[Sequence[str]]
    ) -> list[list[tuple[bytes | None, float | None]]]:
        if self._get_with_ttl is None:
            self._get_with_ttl = self._client.register_script(_GET_WITH_TTL)
        flat = await self._get_with_ttl(keys=[key for keys in calls for key in keys])
        # decode_responses=False: every non-nil value is bytes. PTTL: -1 no expiry,
        # -2 no such key (its value is nil as well).
        pairs = [
            (flat[i], None if flat[i + 1] == -1 else max(0, int(flat[i + 1])) / 1000)
            for i in range(0, len(flat), 2)
        ]
        return _split(pairs, calls)

    async def _set_pipeline(self, calls: list[tuple[Mapping[str, bytes], int]]) -> list[None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for items, ttl_ms in calls:
                for key, value in items.items():
                    pipe.set(key, value, px=ttl_ms)
            await pipe.execute()
        return [None] * len(calls)

    async def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            # An empty prefix would wipe a Redis that other tenants may share.
            raise ValueError("delete_prefix needs a non-empty prefix on redis")
        removed = 0
        pattern = glob_escape(prefix) + "*"
        try:
            chunk: list[bytes] = []
            async for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
                chunk.append(key)
                if len(chunk) >= UNLINK_CHUNK:
                    removed += int(await self._client.unlink(*chunk))
                    chunk = []
            if chunk:
                removed += int(await self._client.unlink(*chunk))
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._unavailable("delete_prefix", exc) from exc
        return removed

    async def close(self) -> None:
        for batcher in (self._gets, self._gets_with_ttl, self._sets):
            await batcher.close()
        # Closing a client whose server is gone must not fail shutdown.
        with contextlib.suppress(TimeoutError, RedisError, OSError):
            await self._client.aclose()


def _split(flat: Sequence[V], calls: Sequence[Sequence[str]]) -> list[list[V]]:
    """``flat`` (one answer per key of every call, in order) cut back into each call's."""
    if len(flat) != sum(len(keys) for keys in calls):
        raise ValueError(f"{len(flat)} values for {sum(len(k) for k in calls)} keys")
    out, at = [], 0
    for keys in calls:
        out.append(list(flat[at : at + len(keys)]))
        at += len(keys)
    return out
