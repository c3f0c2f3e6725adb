"""Where each caller's GCRA state lives: in this process, or in Redis for many replicas.

Chosen by URL (:func:`from_url`): ``memory://`` (the default: one server process, where an
in-process limiter is exact) or ``redis://host:port/db`` (every API replica shares one
count per caller; an in-process limiter would multiply the limit by the replica count).
The Redis backend runs :func:`tenfold.ratelimit.policy.decide`'s arithmetic in one Lua
script, atomic per caller, one round trip per request; ``now`` comes from the injected
clock (wall time by default, so replicas agree up to their clock skew, which shifts a
caller's budget by at most that many seconds of rate). A Redis error or timeout raises
:class:`LimiterUnavailable`; the middleware then admits the request (fail open: a limiter
outage must not take the API down) and counts it.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tenfold.queue.wallclock import NowClock, WallClock
from tenfold.ratelimit.policy import Decision, RateLimit, decide, remaining

DEFAULT_PREFIX = "tenfold:ratelimit:"
DEFAULT_TIMEOUT_S = 0.1


class LimiterUnavailable(Exception):
    """The limiter's store failed (internal: the middleware admits the request)."""


class Limiter(Protocol):
    async def acquire(self, caller: str, limit: RateLimit, cost: int = 1) -> Decision: ...

    async def close(self) -> None: ...


class MemoryLimiter:
    """One float per caller in a dict (callers are API-key tenants: a bounded set)."""

    def __init__(self, clock: NowClock | None = None) -> None:
        self.clock = clock or WallClock()
        self._tat: dict[str, float] = {}

    async def acquire(self, caller: str, limit: RateLimit, cost: int = 1) -> Decision:
        decision = decide(self._tat.get(caller), self.clock.now(), limit, cost)
        self._tat[caller] = decision.tat
        return decision

    async def close(self) -> None:
        self._tat.clear()


# KEYS[1] the caller's key; ARGV now, interval_s, burst, cost. Returns
# {allowed, tat, retry_after_s} as strings (Redis truncates Lua numbers to integers).
# The same arithmetic as policy.decide; the key expires once the bucket is full again.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local base = tonumber(redis.call('GET', KEYS[1]))
if base == nil or base < now then base = now end
local new_tat = base + cost * interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, tostring(base), tostring(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.17g', new_tat),
           'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, tostring(new_tat), '0'}
"""


class RedisLimiter:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: NowClock | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.prefix = prefix
        self.clock = clock or WallClock()
        # Lazy: building the limiter does no I/O. Short timeouts, no retries: an outage
        # costs one bounded wait per request, then the request is admitted.
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._script: Any = self._client.register_script(_GCRA)

    async def acquire(self, caller: str, limit: RateLimit, cost: int = 1) -> Decision:
        if not 1 <= cost <= limit.burst:
            raise ValueError(f"cost must be in 1..burst ({limit.burst}), got {cost}")
        now = self.clock.now()
        args = [repr(now), repr(limit.interval_s), limit.burst, cost]
        try:
            allowed, tat, retry = await self._script(keys=[self.prefix + caller], args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise LimiterUnavailable(f"rate limiter store: {exc}") from exc
        tat = float(tat)
        return Decision(bool(int(allowed)), tat, float(retry), remaining(tat, now, limit))

    async def close(self) -> None:
        await self._client.aclose()


def from_url(url: str, *, clock: NowClock | None = None) -> Limiter:
    """``memory://`` or ``redis://host:port/db`` (also ``rediss://``, ``unix://``).

    ``clock`` is the memory limiter's (the process's own, e.g. monotonic); the Redis
    limiter always counts in wall time, which every replica shares."""
    if url.startswith("memory://"):
        return MemoryLimiter(clock)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLimiter(url)
    raise ValueError(f"rate limit store {url!r}: use memory:// or redis://host:port/db")
