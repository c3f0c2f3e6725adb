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

import asyncio
import contextlib
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


# KEYS: one caller key per request (a key may repeat); ARGV[1] now, then per request its
# interval_s, burst and cost. Returns, per request, {allowed, tat, retry_after_s} flattened,
# as strings (Redis truncates Lua numbers to integers). policy.decide's arithmetic, request
# after request in order; a key expires once its bucket is full again.
_GCRA = """
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local base = tonumber(redis.call('GET', key))
  if base == nil or base < now then base = now end
  local new_tat = base + cost * interval
  local allow_at = new_tat - burst * interval
  if now < allow_at then
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = 0, tostring(base), tostring(allow_at - now)
  else
    redis.call('SET', key, string.format('%.17g', new_tat),
               'PX', math.ceil((new_tat - now) * 1000) + 1000)
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = 1, tostring(new_tat), '0'
  end
end
return out
"""

_Pending = tuple[str, RateLimit, int, "asyncio.Future[Decision]"]


class RedisLimiter:
    """Requests that arrive while a round trip is in flight share the next one: one script
    call decides them all, in arrival order (the dynamic batching tenfold does for models,
    applied to its own Redis calls). Under load that turns one round trip per request,
    which measured ~40% of a cache-hit request's cost, into one per batch."""

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
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Script calls made (one per batch of requests), for tests and curiosity.
        self.round_trips = 0

    async def acquire(self, caller: str, limit: RateLimit, cost: int = 1) -> Decision:
        if not 1 <= cost <= limit.burst:
            raise ValueError(f"cost must be in 1..burst ({limit.burst}), got {cost}")
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.append((self.prefix + caller, limit, cost, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="tenfold-ratelimit")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            now = self.clock.now()
            args: list[Any] = [repr(now)]
            for _, limit, cost, _ in batch:
                args += [repr(limit.interval_s), limit.burst, cost]
            try:
                self.round_trips += 1
                out = await self._script(keys=[key for key, *_ in batch], args=args)
            except BaseException as exc:
                # Every waiter hears of it (none may hang): a store failure as
                # LimiterUnavailable, anything else (a cancelled flush at close) as itself.
                error: BaseException = (
                    LimiterUnavailable(f"rate limiter store: {exc}")
                    if isinstance(exc, RedisError | OSError | TimeoutError)
                    else exc
                )
                for *_, future in batch + (self._pending if error is exc else []):
                    if not future.done():
                        future.set_exception(error)
                if error is exc:
                    raise
                continue
            for i, (_, limit, _, future) in enumerate(batch):
                allowed, tat, retry = out[3 * i : 3 * i + 3]
                if not future.done():  # its request may have been cancelled meanwhile
                    tat = float(tat)
                    decision = Decision(
                        bool(int(allowed)), tat, float(retry), remaining(tat, now, limit)
                    )
                    future.set_result(decision)

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(BaseException):
                await self._flusher
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
