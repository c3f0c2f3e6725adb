"""Where each caller's GCRA state lives: in this process, or in Redis for many replicas.

Chosen by URL (:func:`from_url`): ``memory://`` (the default: one server process, where an
in-process limiter is exact) or ``redis://host:port/db`` (every API replica shares one
count per caller; an in-process limiter would multiply the limit by the replica count).
The Redis backend runs :func:`tenfold.ratelimit.policy.decide`'s arithmetic in one Lua
script, atomic per caller, one round trip per batch of concurrent requests; ``now`` comes
from the injected clock (wall time by default, so replicas agree up to their clock skew,
which shifts a caller's budget by at most that many seconds of rate). A Redis error or
timeout raises :class:`LimiterUnavailable` (each round trip is bounded by ``timeout_s``; a
request may wait for the round trip in flight when it arrived and those queued ahead of it,
at most 256 requests each, then its own); the middleware
then admits the request (fail open: a limiter outage must not take the API down) and
counts it.
"""

from __future__ import annotations

from typing import Any, Protocol

from tenfold.queue.wallclock import NowClock, WallClock
from tenfold.ratelimit.policy import SLACK, Decision, RateLimit, decide, remaining
from tenfold.roundtrips import BatcherClosed, RoundTripBatcher

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


# KEYS: one caller key per request (a key may repeat); ARGV[1] now, ARGV[2] the slack, then
# per request its interval_s, burst and cost. Returns, per request, {allowed, backlog_s,
# retry_after_s} flattened, numbers as '%.17g' strings (Redis truncates Lua numbers to
# integers; tostring keeps 14 digits). policy.decide's arithmetic, request after request in
# order, on a caller's tat kept as two numbers "at backlog" (tat = at + backlog): at epoch
# scale a double's step is 2.4e-7 s, and adding each interval to an absolute tat rounded
# it (0.1% too many requests at 10,000/s, no limit at all past ~4M/s). A key expires once
# its bucket is full again; one it cannot read counts as empty.
_GCRA = """
local now, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local cost = tonumber(ARGV[3 * i + 2])
  local backlog = 0
  local at, held = string.match(redis.call('GET', key) or '', '^(%S+) (%S+)$')
  if tonumber(at) and tonumber(held) then
    backlog = math.max(0, tonumber(held) - (now - tonumber(at)))
  end
  local new_backlog = backlog + cost * interval
  local over = new_backlog - burst * interval
  if over > slack * interval then
    out[3 * i - 2], out[3 * i - 1], out[3 * i] =
      0, string.format('%.17g', backlog), string.format('%.17g', over)
  else
    redis.call('SET', key, string.format('%.17g %.17g', now, new_backlog),
               'PX', math.ceil(new_backlog * 1000) + 1000)
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = 1, string.format('%.17g', new_backlog), '0'
  end
end
return out
"""

#: One request for the script: (key, limit, cost).
_Call = tuple[str, RateLimit, int]


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
        try:  # redis-py is the `redis` extra: the embedded defaults do without it
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise ValueError(
                f"rate limits counted in Redis need redis-py: pip install 'tenfold[redis]' ({exc})"
            ) from exc
        # Lazy: building the limiter does no I/O. Short timeouts, no retries: an outage
        # costs a request a bounded wait per round trip ahead of it and its own (0.1 s each
        # by default; one, or two, unless more than 256 requests queued meanwhile), then the
        # request is admitted.
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._script: Any = self._client.register_script(_GCRA)
        # A store failure, a reply not understood or close(): every waiter hears of it
        # (none may hang), as LimiterUnavailable (the middleware admits them).
        self._batcher: RoundTripBatcher[_Call, Decision] = RoundTripBatcher(
            self._decide, failure=_unavailable, name="tenfold-ratelimit"
        )

    @property
    def round_trips(self) -> int:
        """Script calls made (one per batch of requests), for tests and curiosity."""
        return self._batcher.round_trips

    async def acquire(self, caller: str, limit: RateLimit, cost: int = 1) -> Decision:
        limit.check_cost(cost)  # here, not in the batch: a bad request fails alone
        return await self._batcher.call((self.prefix + caller, limit, cost))

    async def _decide(self, batch: list[_Call]) -> list[Decision]:
        now = self.clock.now()
        args: list[Any] = [repr(now), repr(SLACK)]
        for _, limit, cost in batch:
            args += [repr(limit.interval_s), limit.burst, cost]
        out = await self._script(keys=[key for key, *_ in batch], args=args)
        if len(out) != 3 * len(batch):
            raise ValueError(f"the script answered {len(out)} values for {len(batch)} requests")
        decisions = []
        for i, (_, limit, _) in enumerate(batch):
            allowed, backlog, retry = int(out[3 * i]), float(out[3 * i + 1]), float(out[3 * i + 2])
            # Remaining from the backlog itself: now + backlog is rounded at epoch scale.
            left = remaining(backlog, 0.0, limit)
            decisions.append(Decision(bool(allowed), now + backlog, retry, left))
        return decisions

    async def close(self) -> None:
        await self._batcher.close()
        await self._client.aclose()


def _unavailable(exc: Exception) -> LimiterUnavailable:
    if isinstance(exc, BatcherClosed):
        return LimiterUnavailable("the rate limiter is closed")
    return LimiterUnavailable(f"rate limiter store: {exc}")


def from_url(url: str, *, clock: NowClock | None = None) -> Limiter:
    """``memory://`` or ``redis://host:port/db`` (also ``rediss://``, ``unix://``).

    ``clock`` is the memory limiter's (the process's own, e.g. monotonic); the Redis
    limiter always counts in wall time, which every replica shares."""
    if url.startswith("memory://"):
        return MemoryLimiter(clock)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLimiter(url)
    raise ValueError(f"rate limit store {url!r}: use memory:// or redis://host:port/db")
