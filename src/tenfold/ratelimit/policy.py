"""The rate-limit policy: GCRA, a pure function of ``(state, cost, now)``.

The generic cell rate algorithm (ATM's, as in redis-cell and go-redis/redis_rate) keeps one
number per caller: the *theoretical arrival time* ``tat``, when the caller's bucket would be
empty again. A request costing ``cost`` moves it ``cost / rate`` seconds later and is
allowed unless that puts it more than ``burst / rate`` seconds ahead of ``now``. It is a
token bucket (``rate`` per second, ``burst`` deep) in one float, with an exact
Retry-After. Written out here (a few lines) rather than taken from the ``limits`` package,
whose strategies read the wall clock themselves: the policy takes ``now`` so that tests
drive it with a fake clock, and the Redis backend runs the same arithmetic in one Lua
script (``tenfold.ratelimit.backends``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A request due within this fraction of an interval is due: sums of ``cost * interval``
#: land a hair off (100 requests of 0.01 s add up to 1.0000000000000007 s), and the last
#: request of a burst arriving at one instant must not be refused by that last bit.
SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate_per_s`` requests per second on average, up to ``burst`` at once."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"rate_per_s must be a positive number, got {self.rate_per_s}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an integer >= 1, got {self.burst!r}")

    @classmethod
    def of(cls, rate_per_s: float, burst: int = 0) -> RateLimit:
        """``burst`` 0: one second's worth (at least 1)."""
        return cls(rate_per_s, burst or max(1, math.ceil(rate_per_s)))

    @property
    def interval_s(self) -> float:
        return 1.0 / self.rate_per_s

    def check_cost(self, cost: int) -> None:
        if not 1 <= cost <= self.burst:
            raise ValueError(
                f"cost must be in 1..burst ({self.burst}), got {cost}: it would never fit"
            )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: The caller's new state (unchanged when refused).
    tat: float
    #: Seconds until a request of the same cost would be allowed (0 when allowed).
    retry_after_s: float
    #: Requests of cost 1 still allowed right now.
    remaining: int


def decide(tat: float | None, now: float, limit: RateLimit, cost: int = 1) -> Decision:
    """Admit or refuse one request of ``cost`` for a caller whose state is ``tat``
    (None: never seen)."""
    limit.check_cost(cost)
    interval = limit.interval_s
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * interval
    allow_at = new_tat - limit.burst * interval
    if allow_at - now > SLACK * interval:
        return Decision(False, base, allow_at - now, remaining(base, now, limit))
    return Decision(True, new_tat, 0.0, remaining(new_tat, now, limit))


def remaining(tat: float, now: float, limit: RateLimit) -> int:
    """Requests of cost 1 a caller in state ``tat`` may still make at ``now``."""
    # Rounded to a microsecond first: (tat - now) / interval lands a hair off an integer.
    used = round((tat - now) / limit.interval_s, 6)
    return max(0, limit.burst - math.ceil(used))
