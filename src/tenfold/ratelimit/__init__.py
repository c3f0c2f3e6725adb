"""Per-tenant rate limits: a pure GCRA policy and where its state lives (memory, Redis)."""

from tenfold.ratelimit.backends import (
    Limiter,
    LimiterUnavailable,
    MemoryLimiter,
    RedisLimiter,
    from_url,
)
from tenfold.ratelimit.policy import Decision, RateLimit, decide

__all__ = [
    "Decision",
    "Limiter",
    "LimiterUnavailable",
    "MemoryLimiter",
    "RateLimit",
    "RedisLimiter",
    "decide",
    "from_url",
]
