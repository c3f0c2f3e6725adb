"""Plans: a profile + a load + a price -> batch size, timeout, replicas, dollars.

All pure. The CLI reads files and prints; everything it shows comes from here.

    req = PlanRequest(qps=1000, p99_budget_ms=100, price_per_hour_usd=1.006,
                      cache_hit_rate=0.4)
    row = plan(profile.points, req)                # raises BudgetInfeasible / PlanInfeasible
    rows = comparisons(profile.points, req)        # plan, no batching, no cache, neither
    ladder(profile.points, req)                    # 10 .. 100,000 QPS
    batch_table(profile, price_per_hour_usd=1.006) # the seed's batching table
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from tenfold.planner.catalog import Catalog, Gpu
from tenfold.planner.costs import cost_per_1k_requests_usd, monthly_cost_usd
from tenfold.planner.profile import Profile, ProfilePoint
from tenfold.planner.sizing import (
    BudgetInfeasible,
    Operating,
    PlanInfeasible,
    choose_operating,
    idle_operating,
    operating_point,
    replicas_needed,
)

#: The ``--scales`` ladder, like the seed's scale table.
SCALES_QPS: tuple[float, ...] = (10, 100, 1_000, 10_000, 100_000)


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What the user asks for. ``replicas`` set prices a fixed fleet instead of sizing one."""

    qps: float
    p99_budget_ms: float
    price_per_hour_usd: float
    cache_hit_rate: float = 0.0
    target_utilization: float = 0.7
    dp_efficiency: float = 0.95
    min_replicas: int = 1
    replicas: int | None = None
    #: Time a serving replica adds to each batch beyond the model's own (profiled) time:
    #: HTTP, validation, scheduling and the trip to the worker process. 3 ms fits what
    #: ``benchmarks/plan_check.py`` measured here (served capacity at batch 2, 4 and 16
    #: matched the profile plus 2.5-4.4 ms per batch).
    serving_overhead_ms: float = 3.0

    def __post_init__(self) -> None:
        if not (self.qps >= 0 and math.isfinite(self.qps)):
            raise ValueError(f"qps must be a finite number >= 0, got {self.qps}")
        if not (self.p99_budget_ms > 0 and math.isfinite(self.p99_budget_ms)):
            raise ValueError(f"p99 budget must be a finite number > 0 ms, got {self.p99_budget_ms}")
        if not (self.price_per_hour_usd >= 0 and math.isfinite(self.price_per_hour_usd)):
            raise ValueError(
                f"price per hour must be a finite number >= 0, got {self.price_per_hour_usd}"
            )
        if not 0 <= self.cache_hit_rate <= 1:
            raise ValueError(f"cache hit rate must be in [0, 1], got {self.cache_hit_rate}")
        if not 0 < self.target_utilization <= 1:
            raise ValueError(f"target utilization must be in (0, 1], got {self.target_utilization}")
        if not 0 < self.dp_efficiency <= 1:
            raise ValueError(
                f"data-parallel efficiency must be in (0, 1], got {self.dp_efficiency}"
            )
        if not (self.serving_overhead_ms >= 0 and math.isfinite(self.serving_overhead_ms)):
            raise ValueError(f"serving overhead must be >= 0 ms, got {self.serving_overhead_ms}")
        if self.min_replicas < 0:
            raise ValueError(f"min replicas must be >= 0, got {self.min_replicas}")
        if self.replicas is not None and self.replicas < 1:
            raise ValueError(f"a fixed fleet needs replicas >= 1, got {self.replicas}")

    @property
    def effective_qps(self) -> float:
        """Requests that reach the model: the cache answers the rest."""
        return self.qps * (1.0 - self.cache_hit_rate)


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One priced configuration (the plan itself, or a comparison row)."""

    label: str
    qps: float
    cache_hit_rate: float
    effective_qps: float
    batch_size: int
    batch_timeout_ms: float
    replicas: int
    fleet_items_per_s: float
    utilization: float
    predicted_p99_ms: float
    meets_budget: bool
    price_per_hour_usd: float
    monthly_cost_usd: float
    cost_per_1k_requests_usd: float | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # JSON has no infinity or NaN: an overloaded configuration's p99, and that of a
        # fleet scaled to zero (a cold start the profile does not measure), are null.
        for key in ("predicted_p99_ms", "batch_timeout_ms"):
            if not math.isfinite(out[key]):
                out[key] = None
        return out


def _row(label: str, req: PlanRequest, op: Operating, meets: bool) -> PlanRow:
    fleet_per_hour = op.replicas * req.price_per_hour_usd
    return PlanRow(
        label=label,
        qps=req.qps,
        cache_hit_rate=req.cache_hit_rate,
        effective_qps=req.effective_qps,
        batch_size=op.batch_size,
        batch_timeout_ms=op.batch_timeout_ms,
        replicas=op.replicas,
        fleet_items_per_s=op.fleet_items_per_s,
        utilization=op.utilization,
        predicted_p99_ms=op.predicted_p99_ms,
        meets_budget=meets,
        price_per_hour_usd=req.price_per_hour_usd,
        monthly_cost_usd=monthly_cost_usd(op.replicas, req.price_per_hour_usd),
        cost_per_1k_requests_usd=cost_per_1k_requests_usd(fleet_per_hour, req.qps),
    )


def served(points: Sequence[ProfilePoint], overhead_ms: float) -> list[ProfilePoint]:
    """The profile as a serving replica sees it: every batch takes ``overhead_ms`` longer
    (latencies up by it; throughput ``b / (b / items_per_s + overhead)``), which costs
    small batches the most."""
    if overhead_ms == 0:
        return list(points)
    return [
        replace(
            p,
            latency_p50_ms=p.latency_p50_ms + overhead_ms,
            latency_p99_ms=p.latency_p99_ms + overhead_ms,
            items_per_s=p.batch_size / (p.batch_size / p.items_per_s + overhead_ms / 1000.0),
        )
        for p in points
    ]


def plan(points: Sequence[ProfilePoint], req: PlanRequest, label: str = "plan") -> PlanRow:
    """The cheapest configuration meeting the budget; raises when there is none.

    ``points`` is the profile as measured; ``req.serving_overhead_ms`` is added here.
    """
    op = choose_operating(
        served(points, req.serving_overhead_ms),
        req.effective_qps,
        req.p99_budget_ms,
        target_utilization=req.target_utilization,
        dp_efficiency=req.dp_efficiency,
        min_replicas=req.min_replicas,
        replicas=req.replicas,
    )
    return _row(label, req, op, meets=True)


def best_effort(points: Sequence[ProfilePoint], req: PlanRequest, label: str) -> PlanRow:
    """Like :func:`plan`, but a budget miss yields a row with ``meets_budget=False``.

    The row then shows the batch size closest to the budget, sized by the replica
    formula (or the fixed fleet); used for comparison rows and the scale ladder.
    """
    try:
        return plan(points, req, label)
    except BudgetInfeasible as exc:
        point = next(p for p in points if p.batch_size == exc.batch_size)
        point = served([point], req.serving_overhead_ms)[0]
    except PlanInfeasible:
        point = max(served(points, req.serving_overhead_ms), key=lambda p: p.items_per_s)
    fleet = req.replicas or replicas_needed(
        req.effective_qps,
        point.items_per_s,
        req.target_utilization,
        req.dp_efficiency,
        req.min_replicas,
    )
    if req.effective_qps == 0:
        op = idle_operating(point, fleet, req.dp_efficiency)
    else:
        op = operating_point(point, req.effective_qps, fleet, req.dp_efficiency)
    return _row(label, req, op, meets=op.predicted_p99_ms <= req.p99_budget_ms)


def comparisons(points: Sequence[ProfilePoint], req: PlanRequest) -> list[PlanRow]:
    """Rows to compare with the plan: without batching, without cache, without either.

    "Without batching" needs a batch-size-1 point in the profile; "without cache" is
    shown only when the request has a cache hit rate.
    """
    rows = []
    single = [p for p in points if p.batch_size == 1]
    no_cache = replace(req, cache_hit_rate=0.0)
    if single:
        rows.append(best_effort(single, req, "no batching"))
    if req.cache_hit_rate > 0:
        rows.append(best_effort(points, no_cache, "no cache"))
        if single:
            rows.append(best_effort(single, no_cache, "no batching, no cache"))
    return rows


def ladder(
    points: Sequence[ProfilePoint], req: PlanRequest, qps_values: Sequence[float] = SCALES_QPS
) -> list[PlanRow]:
    """The plan at each load on the ladder (rows that cannot meet the budget say so).

    Each row sizes its own fleet, like the seed's scale table, even if ``req`` fixes one.
    """
    return [
        best_effort(points, replace(req, qps=q, replicas=None), f"{q:g} QPS") for q in qps_values
    ]


# --- carrying a profile to another device ---


@dataclass(frozen=True, slots=True)
class Translation:
    points: tuple[ProfilePoint, ...]
    speed_factor: float
    note: str


def translate(
    profile: Profile, target: Gpu, catalog: Catalog, source: Gpu | None = None
) -> Translation:
    """Scale a profile measured on one device to ``target`` by the catalog's relative speeds.

    ``source`` defaults to the catalog entry the profile's ``device`` names; when none
    does, the profile is taken as measured on the target (factor 1) and the note says so.
    """
    src = source or catalog.for_device(profile.device)
    if src is None:
        return Translation(
            profile.points,
            1.0,
            f"profile device {profile.device!r} is not in the catalog: its figures are used "
            f"as the {target.key}'s as they are (pass --profile-gpu to scale them)",
        )
    factor = target.relative_speed / src.relative_speed
    if src.key == target.key:
        return Translation(profile.points, 1.0, f"profile measured on {target.key}")
    points = tuple(
        replace(
            p,
            latency_p50_ms=p.latency_p50_ms / factor,
            latency_p99_ms=p.latency_p99_ms / factor,
            items_per_s=p.items_per_s * factor,
        )
        for p in profile.points
    )
    return Translation(
        points,
        factor,
        f"profile measured on {src.key}, scaled x{factor:.3g} to {target.key} by the catalog's "
        "relative speeds: an estimate; profile on the target GPU for a plan you will act on",
    )


# --- the seed's batching table ---


@dataclass(frozen=True, slots=True)
class BatchRow:
    batch_size: int
    latency_p50_ms: float
    latency_p99_ms: float
    items_per_s: float
    relative_throughput: float
    cost_per_1k_requests_usd: float
    busy_fraction: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_table(profile: Profile, price_per_hour_usd: float) -> list[BatchRow]:
    """Per batch size: latency, throughput, throughput relative to the smallest batch,
    and the cost per 1K requests of one accelerator kept fully busy at that batch."""
    base = profile.points[0].items_per_s
    return [
        BatchRow(
            batch_size=p.batch_size,
            latency_p50_ms=p.latency_p50_ms,
            latency_p99_ms=p.latency_p99_ms,
            items_per_s=p.items_per_s,
            relative_throughput=p.items_per_s / base,
            cost_per_1k_requests_usd=cost_per_1k_requests_usd(price_per_hour_usd, p.items_per_s)
            or 0.0,
            busy_fraction=p.busy_fraction,
        )
        for p in profile.points
    ]


__all__ = [
    "SCALES_QPS",
    "BatchRow",
    "PlanRequest",
    "PlanRow",
    "Translation",
    "batch_table",
    "best_effort",
    "comparisons",
    "ladder",
    "plan",
    "served",
    "translate",
]
