"""Money arithmetic: monthly cost, cost per 1K requests, live cost while serving.

A month is 30 days = 720 hours, as in the seed tables. Costs are always quoted
**per 1,000 requests** (the seed's tables say "per request" but show per-1K figures).

    monthly_cost_usd(replicas=4, price_per_hour_usd=0.75)           # 2160.0
    cost_per_1k_requests_usd(fleet_per_hour_usd=0.75, qps=10)        # 0.0208...
    live_cost(busy_s=30, wall_s=60, requests=6000, price_per_hour_usd=1.006)
"""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_MONTH = 720.0
SECONDS_PER_HOUR = 3600.0


def monthly_cost_usd(replicas: int, price_per_hour_usd: float) -> float:
    """Cost of ``replicas`` accelerators held for a 720-hour month."""
    if replicas < 0 or price_per_hour_usd < 0:
        raise ValueError("replicas and price_per_hour_usd must be >= 0")
    return replicas * price_per_hour_usd * HOURS_PER_MONTH


def cost_per_1k_requests_usd(fleet_per_hour_usd: float, qps: float) -> float | None:
    """Dollars per 1,000 requests for a fleet costing ``fleet_per_hour_usd`` serving ``qps``.

    ``None`` when no requests arrive (the cost per request is undefined, not zero).
    """
    if fleet_per_hour_usd < 0 or qps < 0:
        raise ValueError("fleet_per_hour_usd and qps must be >= 0")
    if qps == 0:
        return None
    return fleet_per_hour_usd / (qps * SECONDS_PER_HOUR) * 1000.0


@dataclass(frozen=True, slots=True)
class LiveCost:
    """What serving has cost so far, from counters the server keeps."""

    busy_fraction: float
    """Time in predict / wall time: the share of paid accelerator time doing work."""
    cost_usd: float
    """Accelerator time paid for so far (wall time x price)."""
    idle_cost_usd: float
    """The part of ``cost_usd`` paid while the accelerator sat idle."""
    cost_per_1k_requests_usd: float | None
    """``None`` until the first request is served."""


def live_cost(busy_s: float, wall_s: float, requests: int, price_per_hour_usd: float) -> LiveCost:
    """Live cost of one accelerator (or a fleet: pass sums over workers for both times).

    ``busy_s`` is the time spent inside ``predict``, ``wall_s`` the time the accelerator
    has been held (paid for), ``requests`` the requests answered in that time (cache
    hits included: they are what the money bought).
    """
    if busy_s < 0 or wall_s < 0 or requests < 0 or price_per_hour_usd < 0:
        raise ValueError("busy_s, wall_s, requests and price_per_hour_usd must be >= 0")
    if busy_s > wall_s * (1 + 1e-9):
        raise ValueError(f"busy_s ({busy_s}) cannot exceed wall_s ({wall_s})")
    busy_fraction = min(1.0, busy_s / wall_s) if wall_s > 0 else 0.0
    cost = wall_s / SECONDS_PER_HOUR * price_per_hour_usd
    return LiveCost(
        busy_fraction=busy_fraction,
        cost_usd=cost,
        idle_cost_usd=cost * (1.0 - busy_fraction),
        cost_per_1k_requests_usd=cost / requests * 1000.0 if requests else None,
    )
