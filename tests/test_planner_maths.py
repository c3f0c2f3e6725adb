"""Planner maths: the seed tables, replica sizing, latency model, edge cases."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.planner.costs import (
    HOURS_PER_MONTH,
    cost_per_1k_requests_usd,
    live_cost,
    monthly_cost_usd,
)
from tenfold.planner.plan import (
    SCALES_QPS,
    PlanRequest,
    batch_table,
    best_effort,
    comparisons,
    ladder,
    plan,
    served,
)
from tenfold.planner.profile import Profile, ProfilePoint
from tenfold.planner.report import ms
from tenfold.planner.sizing import (
    BudgetInfeasible,
    PlanInfeasible,
    _fewest_replicas_within,
    _min_p99_ms,
    fleet_items_per_s,
    operating_point,
    queue_p99_ms,
    replicas_needed,
)

# NOTES §5: batching on an A10G-class GPU, batch -> requests/s.
SEED_CURVE = ((1, 100.0), (8, 364.0), (32, 582.0), (64, 640.0))
G5_XLARGE_PER_HOUR = 1.006
SEED_GPU_MONTH = 540.0  # $0.75/hour
SEED_SPOT_GPU_MONTH = 360.0  # the 200-GPU hyperscale row


def seed_profile(p99_over_p50: float = 1.2) -> Profile:
    """The seed curve; batch latency = batch / throughput (10 ms at 1 -> 100 ms at 64)."""
    return Profile(
        model="seed",
        version="1",
        device="NVIDIA A10G",
        points=tuple(
            ProfilePoint(b, b / t * 1000, b / t * 1000 * p99_over_p50, t) for b, t in SEED_CURVE
        ),
    )


# --- the seed's batching table, in dollars per 1K requests ---


@pytest.mark.parametrize(
    ("batch_size", "items_per_s", "latency_ms", "relative", "usd_per_1k"),
    [
        (1, 100, 10.0, 1.00, 0.0027944),  # the seed prints $0.0028
        (8, 364, 21.98, 3.64, 0.00076770),
        (32, 582, 54.98, 5.82, 0.00048015),
        (64, 640, 100.0, 6.40, 0.00043663),
    ],
)
def test_seed_batching_table(
    batch_size: int, items_per_s: float, latency_ms: float, relative: float, usd_per_1k: float
) -> None:
    rows = {r.batch_size: r for r in batch_table(seed_profile(), G5_XLARGE_PER_HOUR)}
    row = rows[batch_size]
    assert row.items_per_s == items_per_s
    assert row.latency_p50_ms == pytest.approx(latency_ms, abs=0.01)
    assert row.relative_throughput == pytest.approx(relative)
    assert row.cost_per_1k_requests_usd == pytest.approx(usd_per_1k, rel=1e-4)


def test_seed_batching_table_first_row_rounds_to_the_seed_figure() -> None:
    row = batch_table(seed_profile(), G5_XLARGE_PER_HOUR)[0]
    assert round(row.cost_per_1k_requests_usd, 4) == 0.0028


# --- the seed's scale table ---


def test_seed_scale_row_10_qps_on_one_gpu() -> None:
    req = PlanRequest(qps=10, p99_budget_ms=100, price_per_hour_usd=SEED_GPU_MONTH / 720)
    row = plan(seed_profile().points, req)
    assert row.replicas == 1
    assert row.monthly_cost_usd == pytest.approx(540.0)
    assert row.cost_per_1k_requests_usd == pytest.approx(0.020833, rel=1e-4)
    assert round(row.cost_per_1k_requests_usd or 0, 3) == 0.021


def test_seed_scale_hyperscale_row_200_spot_gpus() -> None:
    req = PlanRequest(
        qps=100_000,
        p99_budget_ms=1000,
        price_per_hour_usd=SEED_SPOT_GPU_MONTH / 720,
        replicas=200,
        serving_overhead_ms=0,  # the seed's arithmetic: profiled throughput as served
    )
    row = plan(seed_profile().points, req)
    assert row.replicas == 200
    assert row.monthly_cost_usd == pytest.approx(72_000.0)
    assert row.cost_per_1k_requests_usd == pytest.approx(72_000 / (100_000 * 720 * 3.6))
    # 500 req/s per GPU: batch 8 (345/s with 0.95 efficiency) would overload; 32 carries it.
    assert row.batch_size == 32
    assert row.utilization == pytest.approx(500 / (582 * 0.95))


def test_scale_ladder_covers_10_to_100000_qps_and_grows() -> None:
    req = PlanRequest(qps=0, p99_budget_ms=150, price_per_hour_usd=0.75)
    rows = ladder(seed_profile().points, req)
    assert [r.qps for r in rows] == list(SCALES_QPS) == [10, 100, 1_000, 10_000, 100_000]
    assert all(r.meets_budget for r in rows)
    replicas = [r.replicas for r in rows]
    assert replicas == sorted(replicas) and replicas[0] == 1 and replicas[-1] > 100
    # Batching pays more at scale: cost per 1K falls as the load grows.
    costs = [r.cost_per_1k_requests_usd or 0 for r in rows]
    assert costs == sorted(costs, reverse=True)


# --- money ---


@pytest.mark.parametrize(
    ("fleet_per_hour", "qps", "expected"),
    [
        (1.006, 100, 0.0027944),
        (0.75, 10, 0.0208333),
        (100.0, 100_000, 0.00027778),
        (1.0, 0, None),
    ],
)
def test_cost_per_1k_requests(fleet_per_hour: float, qps: float, expected: float | None) -> None:
    got = cost_per_1k_requests_usd(fleet_per_hour, qps)
    assert got == (None if expected is None else pytest.approx(expected, rel=1e-4))


def test_a_month_is_720_hours() -> None:
    assert HOURS_PER_MONTH == 720
    assert monthly_cost_usd(4, 0.75) == pytest.approx(2160.0)
    assert monthly_cost_usd(0, 5.0) == 0


@pytest.mark.parametrize(
    ("busy_s", "wall_s", "requests", "price", "busy", "cost", "idle", "per_1k"),
    [
        (30, 60, 6000, 1.006, 0.5, 60 / 3600 * 1.006, 30 / 3600 * 1.006, 60 / 3600 * 1.006 / 6),
        (3600, 3600, 360_000, 1.006, 1.0, 1.006, 0.0, 0.0027944),
        (0, 3600, 0, 2.0, 0.0, 2.0, 2.0, None),
        (0, 0, 0, 2.0, 0.0, 0.0, 0.0, None),
    ],
)
def test_live_cost(
    busy_s: float,
    wall_s: float,
    requests: int,
    price: float,
    busy: float,
    cost: float,
    idle: float,
    per_1k: float | None,
) -> None:
    got = live_cost(busy_s, wall_s, requests, price)
    assert got.busy_fraction == pytest.approx(busy)
    assert got.cost_usd == pytest.approx(cost)
    assert got.idle_cost_usd == pytest.approx(idle)
    if per_1k is None:
        assert got.cost_per_1k_requests_usd is None
    else:
        assert got.cost_per_1k_requests_usd == pytest.approx(per_1k, rel=1e-4)


def test_live_cost_rejects_busy_beyond_wall() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        live_cost(61, 60, 10, 1.0)


# --- replicas ---


@pytest.mark.parametrize(
    ("qps", "items_per_s", "util", "eff", "min_replicas", "expected"),
    [
        (0, 100, 0.7, 0.95, 1, 1),  # no traffic: keep the minimum
        (0, 100, 0.7, 0.95, 0, 0),  # ...which may be zero (scale to zero)
        (70, 100, 0.7, 0.95, 1, 1),  # exactly one replica's share: no efficiency loss
        (71, 100, 0.7, 0.95, 1, 2),
        (600, 100, 0.75, 0.95, 1, 9),  # 600 / 71.25 = 8.4
        (140, 100, 0.7, 1.0, 1, 2),  # 2.0 exactly: float noise must not add a third
        (1000, 640, 1.0, 0.95, 1, 2),
        (10, 100, 0.7, 0.95, 3, 3),
        (380, 100, 1.0, 0.95, 1, 4),  # 4 replicas ~ 3.8x one
    ],
)
def test_replicas_needed(
    qps: float, items_per_s: float, util: float, eff: float, min_replicas: int, expected: int
) -> None:
    assert replicas_needed(qps, items_per_s, util, eff, min_replicas) == expected


def test_four_replicas_give_3_8x() -> None:
    assert fleet_items_per_s(100, 4, 0.95) == pytest.approx(380)
    assert fleet_items_per_s(100, 1, 0.95) == pytest.approx(100)


def test_serving_30_percent_from_cache_needs_30_percent_fewer_gpus() -> None:
    base = PlanRequest(qps=100_000, p99_budget_ms=150, price_per_hour_usd=1.0)
    without = plan(seed_profile().points, base)
    with_cache = plan(seed_profile().points, replace(base, cache_hit_rate=0.3))
    assert with_cache.replicas == pytest.approx(0.7 * without.replicas, abs=1)
    assert with_cache.monthly_cost_usd < without.monthly_cost_usd


# --- the latency model ---


def test_operating_point_arithmetic() -> None:
    point = ProfilePoint(8, 18.0, 20.0, 400.0)
    op = operating_point(point, effective_qps=800, replicas=4, dp_efficiency=0.95)
    assert op.batch_timeout_ms == pytest.approx(35.0)  # 7 more items at 200/s
    assert op.utilization == pytest.approx(200 / 380)
    rho = 200 / 380
    queue = math.log(100 * rho) / (2 * (1 - rho) * 380) * 1000  # Kingman, M/D/1 in items
    assert op.queue_ms == pytest.approx(queue)
    assert op.predicted_p99_ms == pytest.approx(35 + 20 + queue)
    assert op.fleet_items_per_s == pytest.approx(4 * 380)


def test_operating_point_single_replica_batch_1() -> None:
    op = operating_point(
        ProfilePoint(1, 10, 12, 100), effective_qps=50, replicas=1, dp_efficiency=0.9
    )
    assert (op.batch_timeout_ms, op.utilization) == (0.0, 0.5)
    # One replica keeps its full 100 items/s: 12 ms compute + ln(50)/(2 x 0.5 x 100) s.
    assert op.predicted_p99_ms == pytest.approx(12 + math.log(50) * 10)


def test_queue_p99() -> None:
    assert queue_p99_ms(0.0, 100) == 0.0
    assert queue_p99_ms(0.01, 100) == 0.0  # P(wait > 0) = ρ <= 1%: p99 wait is 0
    assert math.isinf(queue_p99_ms(1.0, 100))
    assert queue_p99_ms(0.6, 63.8) == pytest.approx(80.2, abs=0.05)
    # Busier means a longer tail, and faster more than proportionally at high load.
    waits = [queue_p99_ms(u / 10, 100) for u in range(1, 10)]
    assert waits == sorted(waits)
    assert waits[8] / waits[4] > 5


@pytest.mark.parametrize("batch_size", [1, 2, 8, 32])
@pytest.mark.parametrize("qps", [50.0, 900.0, 12_000.0])
@pytest.mark.parametrize("budget_ms", [25.0, 60.0, 200.0, 1000.0])
def test_replica_search_matches_brute_force(batch_size: int, qps: float, budget_ms: float) -> None:
    """The binary searches rest on p99 being convex in the replica count; a linear scan
    over every fleet size must agree with them."""
    point = ProfilePoint(
        batch_size, 5.0 + batch_size, 6.0 + 1.5 * batch_size, 80.0 * batch_size**0.5
    )
    base = replicas_needed(qps, point.items_per_s, 0.75, 0.95)
    limit = math.ceil(100 * qps / (point.items_per_s * 0.95)) + 2
    p99s = {r: operating_point(point, qps, r, 0.95).predicted_p99_ms for r in range(base, limit)}
    within = [r for r, p in p99s.items() if p <= budget_ms]
    assert _fewest_replicas_within(point, qps, budget_ms, base, 0.95) == (
        within[0] if within else None
    )
    assert _min_p99_ms(point, qps, base, 0.95) == pytest.approx(min(p99s.values()))


def test_overloaded_point_has_infinite_p99() -> None:
    op = operating_point(
        ProfilePoint(1, 10, 12, 100), effective_qps=150, replicas=1, dp_efficiency=1
    )
    assert op.utilization == 1.5 and math.isinf(op.predicted_p99_ms)


def test_plan_picks_cheapest_batch_within_budget() -> None:
    req = PlanRequest(qps=1000, p99_budget_ms=100, price_per_hour_usd=1.006, cache_hit_rate=0.4)
    row = plan(seed_profile().points, req)
    assert (row.batch_size, row.replicas) == (8, 3)
    assert row.effective_qps == 600
    assert row.batch_timeout_ms == pytest.approx(7 / 200 * 1000)
    assert row.predicted_p99_ms <= 100
    assert row.monthly_cost_usd == pytest.approx(3 * 1.006 * 720)


def test_tighter_budget_costs_more_replicas() -> None:
    points = seed_profile().points
    loose = plan(points, PlanRequest(qps=5000, p99_budget_ms=300, price_per_hour_usd=1))
    tight = plan(points, PlanRequest(qps=5000, p99_budget_ms=30, price_per_hour_usd=1))
    assert loose.batch_size > tight.batch_size
    assert loose.replicas < tight.replicas


def test_comparison_rows() -> None:
    req = PlanRequest(qps=1000, p99_budget_ms=100, price_per_hour_usd=1.006, cache_hit_rate=0.4)
    points = seed_profile().points
    main = plan(points, req)
    rows = {r.label: r for r in comparisons(points, req)}
    assert set(rows) == {"no batching", "no cache", "no batching, no cache"}
    assert rows["no batching"].batch_size == 1
    assert rows["no cache"].cache_hit_rate == 0 and rows["no cache"].effective_qps == 1000
    for r in rows.values():
        assert r.monthly_cost_usd > main.monthly_cost_usd
    assert rows["no batching, no cache"].replicas == max(r.replicas for r in rows.values())


def test_no_cache_rows_without_a_hit_rate() -> None:
    req = PlanRequest(qps=1000, p99_budget_ms=100, price_per_hour_usd=1.0)
    assert [r.label for r in comparisons(seed_profile().points, req)] == ["no batching"]


# --- edge cases ---


def test_zero_qps() -> None:
    row = plan(seed_profile().points, PlanRequest(qps=0, p99_budget_ms=50, price_per_hour_usd=1))
    assert (row.replicas, row.batch_size, row.batch_timeout_ms) == (1, 1, 0.0)
    assert row.cost_per_1k_requests_usd is None  # no requests: undefined, not $0
    assert row.monthly_cost_usd == 720


def test_zero_qps_scaled_to_zero_costs_nothing() -> None:
    req = PlanRequest(qps=0, p99_budget_ms=50, price_per_hour_usd=1, min_replicas=0)
    row = plan(seed_profile().points, req)
    assert (row.replicas, row.monthly_cost_usd) == (0, 0)


def test_full_cache_hit_rate() -> None:
    req = PlanRequest(qps=5000, p99_budget_ms=50, price_per_hour_usd=1, cache_hit_rate=1.0)
    row = plan(seed_profile().points, req)
    assert row.effective_qps == 0 and row.replicas == 1 and row.utilization == 0
    assert row.cost_per_1k_requests_usd == pytest.approx(1 / (5000 * 3.6))


@pytest.mark.parametrize(("qps", "hit_rate"), [(0, 0.0), (5000, 1.0)])
def test_zero_model_traffic_still_checks_the_budget(qps: float, hit_rate: float) -> None:
    req = PlanRequest(qps=qps, p99_budget_ms=1, price_per_hour_usd=1, cache_hit_rate=hit_rate)
    with pytest.raises(BudgetInfeasible, match=r"minimum achievable p99 is 15\.0 ms") as info:
        plan(seed_profile().points, req)
    # A stray miss still pays batch 1's compute p99: 12 ms profiled + 3 ms serving overhead.
    assert info.value.min_p99_ms == pytest.approx(15.0) and info.value.batch_size == 1
    row = best_effort(seed_profile().points, req, "row")  # a comparison row says it misses
    assert not row.meets_budget and row.predicted_p99_ms == pytest.approx(15.0)


def test_zero_qps_scaled_to_zero_predicts_no_p99() -> None:
    req = PlanRequest(qps=0, p99_budget_ms=50, price_per_hour_usd=1, min_replicas=0)
    row = plan(seed_profile().points, req)
    # No replica: a request waits for a cold start, which the profile does not measure.
    assert row.replicas == 0 and math.isnan(row.predicted_p99_ms)
    assert row.to_dict()["predicted_p99_ms"] is None
    assert ms(row.predicted_p99_ms) == "n/a (cold start)"
    tight = replace(req, p99_budget_ms=1)
    with pytest.raises(BudgetInfeasible):
        plan(seed_profile().points, tight)
    assert best_effort(seed_profile().points, tight, "row").replicas == 0


def test_budget_no_batch_size_can_meet() -> None:
    req = PlanRequest(qps=1000, p99_budget_ms=5, price_per_hour_usd=1)
    with pytest.raises(BudgetInfeasible) as info:
        plan(seed_profile().points, req)
    # Batch 1's compute p99 as served: 12 ms profiled + 3 ms serving overhead.
    assert info.value.min_p99_ms == pytest.approx(15.0)
    assert info.value.batch_size == 1
    assert "minimum achievable p99 is 15.0 ms" in str(info.value)


def test_budget_just_above_compute_p99_is_met_with_more_replicas() -> None:
    req = PlanRequest(qps=1000, p99_budget_ms=15.5, price_per_hour_usd=1)
    row = plan(seed_profile().points, req)
    assert row.batch_size == 1 and row.predicted_p99_ms <= 15.5
    # The queueing p99 must shrink to 0.5 ms of the 15 ms served compute p99, which it
    # does only near 1% busy: ln(100ρ) / (2(1-ρ)·c) <= 0.5 ms with c ~ 73 items/s.
    assert row.utilization <= 0.0108
    served_rate = 1 / (1 / 100 + 0.003)  # 100 items/s profiled, 3 ms more per batch of 1
    assert row.replicas > replicas_needed(1000, served_rate, 0.7, 0.95)


def test_serving_overhead_is_added_to_every_batch() -> None:
    points = seed_profile().points
    req = PlanRequest(qps=5000, p99_budget_ms=300, price_per_hour_usd=1, serving_overhead_ms=0)
    raw = plan(points, req)
    slow = plan(points, replace(req, serving_overhead_ms=50))
    assert slow.replicas > raw.replicas
    one, *_, last = served(points, 5.0)
    assert one.latency_p99_ms == points[0].latency_p99_ms + 5
    assert one.items_per_s == pytest.approx(1 / (1 / points[0].items_per_s + 0.005))
    # The same 5 ms costs a big batch a smaller share of its throughput.
    assert last.items_per_s / points[-1].items_per_s > one.items_per_s / points[0].items_per_s
    with pytest.raises(ValueError, match="serving overhead"):
        replace(req, serving_overhead_ms=-1)


def test_fixed_fleet_too_small() -> None:
    req = PlanRequest(qps=10_000, p99_budget_ms=500, price_per_hour_usd=1, replicas=3)
    # 10,000/s over the best served rate per GPU x 0.95 fleet efficiency.
    best = max(p.items_per_s for p in served(seed_profile().points, 3.0))
    need = math.ceil(10_000 / (best * 0.95))
    with pytest.raises(
        PlanInfeasible, match=rf"3 replicas cannot carry .* at least {need} replicas"
    ):
        plan(seed_profile().points, req)


def test_fixed_fleet_too_small_names_a_stable_fleet_at_an_exact_multiple() -> None:
    # 190/s on 100 items/s x 0.95: 2 replicas run at utilization exactly 1 (unstable).
    points = (ProfilePoint(1, 10, 10, 100.0),)
    req = PlanRequest(
        qps=190, p99_budget_ms=1000, price_per_hour_usd=1, replicas=1, serving_overhead_ms=0
    )
    with pytest.raises(PlanInfeasible, match="at least 3 replicas are needed"):
        plan(points, req)
    with pytest.raises(PlanInfeasible, match="2 replicas cannot carry"):
        plan(points, replace(req, replicas=2))
    assert plan(points, replace(req, replicas=3)).utilization < 1


def test_fixed_fleet_budget_miss_says_the_fleets_minimum() -> None:
    req = PlanRequest(qps=900, p99_budget_ms=20, price_per_hour_usd=1, replicas=2)
    with pytest.raises(BudgetInfeasible, match="minimum achievable p99 on this fleet"):
        plan(seed_profile().points, req)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("qps", -1, "qps"),
        ("p99_budget_ms", 0, "budget"),
        ("p99_budget_ms", math.inf, "budget must be a finite number"),
        ("p99_budget_ms", math.nan, "budget"),
        ("price_per_hour_usd", math.inf, "price per hour must be a finite number"),
        ("cache_hit_rate", 1.5, "cache hit rate"),
        ("target_utilization", 0, "target utilization"),
        ("dp_efficiency", 1.2, "efficiency"),
        ("replicas", 0, "replicas"),
    ],
)
def test_plan_request_validation(field: str, value: float, message: str) -> None:
    args: dict[str, float | None] = {"qps": 10, "p99_budget_ms": 100, "price_per_hour_usd": 1}
    args[field] = value
    with pytest.raises(ValueError, match=message):
        PlanRequest(**args)  # type: ignore[arg-type]


# --- property: the plan is feasible and no cheaper configuration exists ---


@st.composite
def profiles(draw: st.DrawFn) -> tuple[ProfilePoint, ...]:
    sizes = [1, *draw(st.sets(st.sampled_from([2, 4, 8, 16, 32, 64]), min_size=1))]
    base = draw(st.floats(50, 3000))
    gain = draw(st.floats(0.0, 0.9))  # throughput ~ b ** gain: more, with diminishing returns
    tail = draw(st.floats(1.0, 2.0))
    pts = []
    for b in sorted(sizes):
        thr = base * b**gain
        pts.append(ProfilePoint(b, b / thr * 1000, b / thr * 1000 * tail, thr))
    return tuple(pts)


@settings(max_examples=100, deadline=None)
@given(
    points=profiles(),
    qps=st.floats(1, 20_000),
    hit=st.floats(0, 0.9),
    budget=st.floats(2, 500),
    util=st.floats(0.3, 1.0),
)
def test_plan_is_feasible_and_cheapest(
    points: tuple[ProfilePoint, ...], qps: float, hit: float, budget: float, util: float
) -> None:
    req = PlanRequest(
        qps=qps,
        p99_budget_ms=budget,
        price_per_hour_usd=1,
        cache_hit_rate=hit,
        target_utilization=util,
        serving_overhead_ms=0,  # compare against operating_point on the raw points
    )
    lam = req.effective_qps

    def ok(p: ProfilePoint, r: int) -> bool:
        if r < replicas_needed(lam, p.items_per_s, util, 0.95):
            return False
        return operating_point(p, lam, r, 0.95).predicted_p99_ms <= budget

    try:
        row = plan(points, req)
    except BudgetInfeasible as exc:
        assert exc.min_p99_ms > budget * (1 - 1e-9)
        for p in points:
            base = replicas_needed(lam, p.items_per_s, util, 0.95)
            assert not any(ok(p, r) for r in range(base, base * 20 + 20))
        return
    assert row.predicted_p99_ms <= budget
    assert row.utilization <= util + 1e-9
    for p in points:
        assert not any(ok(p, r) for r in range(1, row.replicas)), (p, row)


def test_ladder_sizes_each_row_even_with_a_fixed_fleet() -> None:
    req = PlanRequest(qps=0, p99_budget_ms=150, price_per_hour_usd=0.75, replicas=3)
    rows = ladder(seed_profile().points, req, qps_values=(10, 100_000))
    assert rows[0].replicas == 1 and rows[1].replicas > 3
