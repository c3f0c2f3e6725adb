"""Pure sizing maths: replicas for a load, and the latency of one operating point.

The latency model (documented in ``docs/planner.md``), for batch size ``b`` on ``R``
replicas with the model traffic ``λ`` (requests/s after the cache) spread evenly:

* per-replica arrival rate ``r = λ / R``;
* batch fill time ``fill = (b - 1) / r``: how long the first item of a batch waits for
  ``b - 1`` more; this is also the batch timeout we recommend (flush a partial batch
  rather than wait longer);
* utilization ``ρ = r / (items_per_s(b) x e)`` where ``e`` is the data-parallel
  efficiency (1 for one replica, 0.95 by default for more: 4 replicas ~ 3.8x);
* queueing p99 ``q = ln(100ρ) / (2(1-ρ)·c)`` for a replica clearing ``c`` items/s:
  Kingman's exponential tail of an M/D/1 queue in item units (see :func:`queue_p99_ms`);
  0 while ρ <= 1%;
* ``predicted p99 = fill + latency_p99(b) + q``; ``ρ >= 1`` is unstable (the queue grows
  without bound), predicted p99 = inf.

    replicas_needed(effective_qps=600, items_per_s=100, target_utilization=0.75,
                    dp_efficiency=0.95)                                    # 9
    operating_point(point, effective_qps=600, replicas=9, dp_efficiency=0.95)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tenfold.planner.profile import ProfilePoint

# ceil() of a float that should be an integer (2.0000000000000004) must not add a replica.
_EPS = 1e-9


class PlanInfeasible(ValueError):
    """No configuration meets the constraints; the message says what would."""


class BudgetInfeasible(PlanInfeasible):
    """No batch size meets the p99 budget; ``min_p99_ms`` is the best achievable."""

    def __init__(self, message: str, *, min_p99_ms: float, batch_size: int) -> None:
        super().__init__(message)
        self.min_p99_ms = min_p99_ms
        self.batch_size = batch_size


def fleet_efficiency(replicas: int, dp_efficiency: float) -> float:
    """Throughput share each replica keeps: 1 alone, ``dp_efficiency`` in a fleet."""
    return 1.0 if replicas <= 1 else dp_efficiency


def fleet_items_per_s(items_per_s: float, replicas: int, dp_efficiency: float) -> float:
    """Throughput of ``replicas`` data-parallel replicas (4 at 0.95 -> 3.8x one)."""
    return items_per_s * replicas * fleet_efficiency(replicas, dp_efficiency)


def replicas_needed(
    effective_qps: float,
    items_per_s: float,
    target_utilization: float,
    dp_efficiency: float,
    min_replicas: int = 1,
) -> int:
    """``ceil(λ / (items_per_s x target_utilization x e))``, at least ``min_replicas``.

    ``e`` is 1 when one replica suffices and ``dp_efficiency`` otherwise.
    """
    if effective_qps < 0:
        raise ValueError("effective_qps must be >= 0")
    if items_per_s <= 0:
        raise ValueError("items_per_s must be > 0")
    if effective_qps == 0:
        return min_replicas
    one = effective_qps / (items_per_s * target_utilization)
    if one <= 1 + _EPS:
        return max(1, min_replicas)
    n = math.ceil(effective_qps / (items_per_s * target_utilization * dp_efficiency) - _EPS)
    return max(n, min_replicas, 2)


def queue_p99_ms(utilization: float, capacity_items_per_s: float) -> float:
    """99th-percentile wait in the replica's queue: Kingman's exponential tail for an
    M/D/1 queue in item units (Poisson arrivals, a replica that clears
    ``capacity_items_per_s`` items a second), ``P(wait > t) ~ ρ·exp(-2(1-ρ)·t·μ)``,
    solved for 1%: ``t = ln(100ρ) / (2(1-ρ)·μ)``; 0 while ρ <= 1%, infinite at ρ >= 1.

        queue_p99_ms(0.6, 63.8)   # 80.2: 5.1 item service times at 60% busy
    """
    if utilization >= 1.0:
        return math.inf
    if utilization <= 0.01:
        return 0.0
    return math.log(100 * utilization) / (2 * (1 - utilization) * capacity_items_per_s) * 1000.0


@dataclass(frozen=True, slots=True)
class Operating:
    """One batch size on one fleet size under one load."""

    batch_size: int
    replicas: int
    batch_timeout_ms: float
    per_replica_items_per_s: float
    """Capacity of one replica at this batch size, data-parallel efficiency applied."""
    utilization: float
    compute_p99_ms: float
    queue_ms: float
    predicted_p99_ms: float

    @property
    def fleet_items_per_s(self) -> float:
        return self.per_replica_items_per_s * self.replicas


def operating_point(
    point: ProfilePoint, effective_qps: float, replicas: int, dp_efficiency: float
) -> Operating:
    """Predicted timeout, utilization and p99 of ``point`` on ``replicas`` at ``effective_qps``."""
    if replicas < 1:
        raise ValueError("replicas must be >= 1 to serve traffic")
    b = point.batch_size
    capacity = point.items_per_s * fleet_efficiency(replicas, dp_efficiency)
    rate = effective_qps / replicas
    utilization = rate / capacity
    if b == 1:
        fill_ms = 0.0
    elif rate == 0:
        fill_ms = math.inf
    else:
        fill_ms = (b - 1) / rate * 1000.0
    queue_ms = queue_p99_ms(
        utilization, point.items_per_s * fleet_efficiency(replicas, dp_efficiency)
    )
    return Operating(
        batch_size=b,
        replicas=replicas,
        batch_timeout_ms=fill_ms,
        per_replica_items_per_s=capacity,
        utilization=utilization,
        compute_p99_ms=point.latency_p99_ms,
        queue_ms=queue_ms,
        predicted_p99_ms=fill_ms + point.latency_p99_ms + queue_ms,
    )


def idle_operating(point: ProfilePoint, replicas: int, dp_efficiency: float) -> Operating:
    """``point`` on ``replicas`` when no traffic reaches the model (zero QPS, or every
    request a cache hit): no timeout, so a stray miss is answered at compute speed.

    With no replica kept (``replicas == 0``, scale to zero) a stray miss waits for one to
    start, which the profile does not measure: its predicted p99 is NaN (reported "n/a").
    """
    return Operating(
        batch_size=point.batch_size,
        replicas=replicas,
        batch_timeout_ms=0.0,
        per_replica_items_per_s=point.items_per_s * fleet_efficiency(replicas, dp_efficiency),
        utilization=0.0,
        compute_p99_ms=point.latency_p99_ms,
        queue_ms=0.0,
        predicted_p99_ms=point.latency_p99_ms if replicas >= 1 else math.nan,
    )


def _p99(point: ProfilePoint, lam: float, replicas: int, dp_efficiency: float) -> float:
    return operating_point(point, lam, replicas, dp_efficiency).predicted_p99_ms


def _search_bounds(
    point: ProfilePoint, lam: float, base: int, dp_efficiency: float
) -> tuple[int, int]:
    """The replica range worth searching: from ``base`` (at least 2: a fleet) to where
    utilization falls to 1% and the queueing term is 0, after which only fill grows."""
    lo = max(base, 2)
    hi = max(lo, math.ceil(100 * lam / (point.items_per_s * dp_efficiency)) + 1)
    return lo, hi


def _argmin_replicas(
    point: ProfilePoint, lam: float, lo: int, hi: int, dp_efficiency: float
) -> int:
    """The ``R`` in ``[lo, hi]`` with the lowest predicted p99.

    p99(R) = fill + L + queue is convex in R: fill = (b-1)·R/λ is linear, and the
    queueing term ln(100ρ)/(2(1-ρ))/capacity with ρ = λ/(R·capacity) is a product of two
    positive, decreasing, convex functions of R (then 0 once ρ <= 1%). So "p99 stops
    falling at R" is monotone in R and a binary search finds the minimum.
    """
    while lo < hi:
        mid = (lo + hi) // 2
        if _p99(point, lam, mid + 1, dp_efficiency) >= _p99(point, lam, mid, dp_efficiency):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _fewest_replicas_within(
    point: ProfilePoint, lam: float, budget_ms: float, base: int, dp_efficiency: float
) -> int | None:
    """Smallest ``R >= base`` with predicted p99 <= budget, or ``None``.

    Adding replicas shortens queueing and lengthens batch filling; p99 is convex in R
    (see :func:`_argmin_replicas`), so the feasible replicas form one interval that
    starts on the falling side of the minimum: binary-search it there.
    """
    if _p99(point, lam, base, dp_efficiency) <= budget_ms:
        return base
    lo, hi = _search_bounds(point, lam, base, dp_efficiency)
    best = _argmin_replicas(point, lam, lo, hi, dp_efficiency)
    if _p99(point, lam, best, dp_efficiency) > budget_ms:
        return None
    while lo < best:  # p99 falls over [lo, best]: find the first R within budget
        mid = (lo + best) // 2
        if _p99(point, lam, mid, dp_efficiency) <= budget_ms:
            best = mid
        else:
            lo = mid + 1
    return best


def _min_p99_ms(point: ProfilePoint, lam: float, base: int, dp_efficiency: float) -> float:
    """The lowest predicted p99 this batch size reaches with ``R >= base`` replicas."""
    lo, hi = _search_bounds(point, lam, base, dp_efficiency)
    best = _argmin_replicas(point, lam, lo, hi, dp_efficiency)
    return min(_p99(point, lam, base, dp_efficiency), _p99(point, lam, best, dp_efficiency))


def choose_operating(
    points: Sequence[ProfilePoint],
    effective_qps: float,
    p99_budget_ms: float,
    *,
    target_utilization: float,
    dp_efficiency: float,
    min_replicas: int = 1,
    replicas: int | None = None,
) -> Operating:
    """The cheapest (fewest replicas, then lowest p99) batch size meeting the budget.

    ``replicas`` fixes the fleet instead of sizing it. Raises :class:`BudgetInfeasible`
    with the minimum achievable p99 when no batch size meets the budget, and
    :class:`PlanInfeasible` when a fixed fleet cannot carry the load at any batch size.
    """
    if not points:
        raise ValueError("no profile points to choose from")
    smallest = min(points, key=lambda p: p.batch_size)
    if effective_qps == 0:
        fleet = replicas if replicas is not None else min_replicas
        if smallest.latency_p99_ms > p99_budget_ms:
            raise BudgetInfeasible(
                f"no batch size meets p99 <= {p99_budget_ms:g} ms: even with no traffic to "
                f"queue behind, the minimum achievable p99 is {smallest.latency_p99_ms:.1f} ms "
                f"(batch size {smallest.batch_size}, its compute p99); raise the budget, or "
                "plan for a faster GPU",
                min_p99_ms=smallest.latency_p99_ms,
                batch_size=smallest.batch_size,
            )
        return idle_operating(smallest, fleet, dp_efficiency)
    if replicas is not None:
        return _choose_for_fleet(points, effective_qps, p99_budget_ms, replicas, dp_efficiency)
    best: Operating | None = None
    floor_ms, floor_b = math.inf, smallest.batch_size
    for p in points:
        base = replicas_needed(
            effective_qps, p.items_per_s, target_utilization, dp_efficiency, min_replicas
        )
        r = _fewest_replicas_within(p, effective_qps, p99_budget_ms, base, dp_efficiency)
        if r is None:
            m = _min_p99_ms(p, effective_qps, base, dp_efficiency)
            if m < floor_ms:
                floor_ms, floor_b = m, p.batch_size
            continue
        op = operating_point(p, effective_qps, r, dp_efficiency)
        if best is None or (op.replicas, op.predicted_p99_ms) < (
            best.replicas,
            best.predicted_p99_ms,
        ):
            best = op
    if best is None:
        raise BudgetInfeasible(
            f"no batch size meets p99 <= {p99_budget_ms:g} ms at {effective_qps:g} model "
            f"requests/s: the minimum achievable p99 is {floor_ms:.1f} ms (batch size "
            f"{floor_b}); raise the budget, or plan for a faster GPU",
            min_p99_ms=floor_ms,
            batch_size=floor_b,
        )
    return best


def _choose_for_fleet(
    points: Sequence[ProfilePoint],
    lam: float,
    budget_ms: float,
    replicas: int,
    dp_efficiency: float,
) -> Operating:
    ops = [operating_point(p, lam, replicas, dp_efficiency) for p in points]
    stable = [op for op in ops if op.utilization < 1.0]
    if not stable:
        top = max(ops, key=lambda op: op.per_replica_items_per_s)
        fastest = max(points, key=lambda p: p.items_per_s)
        need = max(math.ceil(lam / (fastest.items_per_s * dp_efficiency) - _EPS), replicas + 1)
        # At an exact multiple of the capacity that count runs at utilization 1 (unstable):
        # name the first count that is stable, by the same test as ``stable`` above.
        while operating_point(fastest, lam, need, dp_efficiency).utilization >= 1.0:
            need += 1
        raise PlanInfeasible(
            f"{replicas} replicas cannot carry {lam:g} model requests/s: at best (batch size "
            f"{top.batch_size}) they carry {top.fleet_items_per_s:.0f}/s; at least "
            f"{need} replicas are needed"
        )
    ok = [op for op in stable if op.predicted_p99_ms <= budget_ms]
    if not ok:
        low = min(stable, key=lambda op: op.predicted_p99_ms)
        raise BudgetInfeasible(
            f"no batch size meets p99 <= {budget_ms:g} ms on {replicas} replicas at {lam:g} "
            f"model requests/s: the minimum achievable p99 on this fleet is "
            f"{low.predicted_p99_ms:.1f} ms (batch size {low.batch_size})",
            min_p99_ms=low.predicted_p99_ms,
            batch_size=low.batch_size,
        )
    return min(ok, key=lambda op: op.predicted_p99_ms)
