"""Plan vs reality: profile `embed`, plan for a load this machine can carry, serve at the
planned configuration under that load, and compare (one command):

    python benchmarks/plan_check.py [--seconds 20] [--budget-ms 1500] [--loads 0.45,0.6]

1. `tenfold profile` the embed example (batch sizes 1..32) on this machine.
2. `tenfold plan` for QPS = load x the best measured items/s, for each of --loads (a
   lighter and a busier replica, both under the planner's 70% target utilization), with
   a p99 budget, at $1.006/hour. This machine is one replica (a second worker process
   would share its two cores, not add hardware): a plan for more is checked as
   `--replicas 1`.
3. `tenfold serve --example embed` with the planned batch size, timeout and workers; first
   closed-loop to measure capacity, then open-loop Poisson arrivals at the planned QPS to
   measure p99.
4. Print predicted vs measured capacity and p99. Target: both within +-20%.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from _harness import ROOT, SERVE_EMBED, ensure, measure_server

sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=4)
    p.add_argument("--profile-seconds", type=float, default=3)
    p.add_argument(
        "--loads", default="0.45,0.6", help="shares of one replica's best rate, comma-separated"
    )
    p.add_argument("--budget-ms", type=float, default=1500)
    args = p.parse_args()
    ensure("aiohttp", "psutil")

    from tenfold.planner.profiler import run_profile

    print("profiling embed ...", flush=True)
    profile = run_profile("embed", batch_sizes=(1, 2, 4, 8, 16, 32), seconds=args.profile_seconds)
    best = max(profile.points, key=lambda pt: pt.items_per_s)
    for pt in profile.points:
        print(
            f"  batch {pt.batch_size:3d}: {pt.items_per_s:6.1f} items/s, "
            f"p50 {pt.latency_p50_ms:7.1f} ms, p99 {pt.latency_p99_ms:7.1f} ms"
        )
    rows = []
    for load in (float(x) for x in args.loads.split(",")):
        rows.extend(_check(profile.points, round(load * best.items_per_s, 1), args))
    print()
    print(f"{'figure':40} {'predicted':>10} {'measured':>10}  measured/predicted (+-20%)")
    for label, predicted, measured, fmt in rows:
        ratio = measured / predicted
        verdict = "PASS" if 0.8 <= ratio <= 1.2 else "FAIL"
        print(f"{label:40} {predicted:10{fmt}} {measured:10{fmt}}  {ratio:5.2f}x {verdict}")


def _check(
    points: Any, qps: float, args: argparse.Namespace
) -> list[tuple[str, float, float, str]]:
    """Plan for ``qps``, serve that plan, and return (figure, predicted, measured) rows."""
    from tenfold.planner import PlanRequest, plan

    request = PlanRequest(qps=qps, p99_budget_ms=args.budget_ms, price_per_hour_usd=1.006)
    row = plan(points, request)
    if row.replicas > 1:
        # This 2-core machine is one replica: a second worker process would share its
        # cores, not add hardware. Check the best plan for a fleet of one instead.
        print(f"(the plan wants {row.replicas} replicas; checking the plan for one)")
        row = plan(points, replace(request, replicas=1))
    print(
        f"plan for {qps} QPS within p99 {args.budget_ms:.0f} ms: batch {row.batch_size}, "
        f"timeout {row.batch_timeout_ms:.1f} ms, {row.replicas} replica(s), capacity "
        f"{row.fleet_items_per_s:.1f} items/s, utilization {row.utilization:.2f}, "
        f"predicted p99 {row.predicted_p99_ms:.0f} ms",
        flush=True,
    )
    argv = [
        *SERVE_EMBED,
        "--no-cache",
        "--max-batch-size",
        str(row.batch_size),
        "--batch-timeout-ms",
        str(row.batch_timeout_ms),
        "--workers",
        str(row.replicas),
    ]
    ns = argparse.Namespace(
        concurrency=4 * row.batch_size * row.replicas, seconds=args.seconds, warmup=args.warmup
    )
    print("measuring capacity (closed loop) ...", flush=True)
    cap = measure_server("plan-capacity", argv, "/readyz", "/v1/models/embed/predict", ns)
    print(f"measuring p99 at {qps} QPS (open loop, Poisson) ...", flush=True)
    load = measure_server(
        "plan-load", argv, "/readyz", "/v1/models/embed/predict", ns, ("--rate", str(qps))
    )
    at = f"@{qps:g} QPS"
    return [
        (
            f"capacity, items/s (batch {row.batch_size})",
            row.fleet_items_per_s,
            cap["items_per_s"],
            ".1f",
        ),
        (f"throughput {at}", qps, load["items_per_s"], ".1f"),
        (
            f"p99 {at}, ms (utilization {row.utilization:.2f})",
            row.predicted_p99_ms,
            load["p99_ms"],
            ".0f",
        ),
    ]


if __name__ == "__main__":
    main()
