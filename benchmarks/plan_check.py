"""Plan vs reality: profile `embed`, plan for a load this machine can carry, serve at the
planned configuration under that load, and compare (one command):

    python benchmarks/plan_check.py [--seconds 20] [--budget-ms 1500]

1. `tenfold profile` the embed example (batch sizes 1..32) on this machine.
2. `tenfold plan` for QPS = --load x the best measured items/s of one replica, with a p99
   budget, at $1.006/hour (one replica is one worker process here).
3. `tenfold serve --example embed` with the planned batch size, timeout and workers; first
   closed-loop to measure capacity, then open-loop Poisson arrivals at the planned QPS to
   measure p99.
4. Print predicted vs measured capacity and p99. Target: both within +-20%.
"""

from __future__ import annotations

import argparse
import sys

from _harness import ROOT, SERVE_EMBED, ensure, measure_server

sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=4)
    p.add_argument("--profile-seconds", type=float, default=3)
    p.add_argument("--load", type=float, default=0.5, help="share of one replica's best rate")
    p.add_argument("--budget-ms", type=float, default=1500)
    args = p.parse_args()
    ensure("aiohttp", "psutil")

    from tenfold.planner import PlanRequest, plan
    from tenfold.planner.profiler import run_profile

    print("profiling embed ...", flush=True)
    profile = run_profile("embed", batch_sizes=(1, 2, 4, 8, 16, 32), seconds=args.profile_seconds)
    best = max(profile.points, key=lambda pt: pt.items_per_s)
    for pt in profile.points:
        print(
            f"  batch {pt.batch_size:3d}: {pt.items_per_s:6.1f} items/s, "
            f"p50 {pt.latency_p50_ms:7.1f} ms, p99 {pt.latency_p99_ms:7.1f} ms"
        )
    qps = round(args.load * best.items_per_s, 1)
    row = plan(
        profile.points, PlanRequest(qps=qps, p99_budget_ms=args.budget_ms, price_per_hour_usd=1.006)
    )
    print(
        f"plan for {qps} QPS within p99 {args.budget_ms:.0f} ms: batch {row.batch_size}, "
        f"timeout {row.batch_timeout_ms:.1f} ms, {row.replicas} replica(s), capacity "
        f"{row.fleet_items_per_s:.1f} items/s, predicted p99 {row.predicted_p99_ms:.0f} ms",
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

    def verdict(predicted: float, measured: float) -> str:
        ratio = measured / predicted
        return f"{ratio:5.2f}x {'PASS' if 0.8 <= ratio <= 1.2 else 'FAIL'}"

    print()
    print(f"{'figure':34} {'predicted':>10} {'measured':>10}  measured/predicted (+-20%)")
    print(
        f"{'capacity, items/s':34} {row.fleet_items_per_s:10.1f} {cap['items_per_s']:10.1f}  "
        f"{verdict(row.fleet_items_per_s, cap['items_per_s'])}"
    )
    print(
        f"{'throughput at planned QPS':34} {qps:10.1f} {load['items_per_s']:10.1f}  "
        f"{verdict(qps, load['items_per_s'])}"
    )
    print(
        f"{'p99 at planned QPS, ms':34} {row.predicted_p99_ms:10.0f} {load['p99_ms']:10.0f}  "
        f"{verdict(row.predicted_p99_ms, load['p99_ms'])}"
    )


if __name__ == "__main__":
    main()
