"""Autoscaling figure: the default rules on the sudden 10x spike trace.

    PYTHONPATH=src python benchmarks/autoscale_bench.py [--profile profile.json | --worker-rps R]

Without a flag it measures the per-worker rate of the ``embed`` example here (one
process, one torch thread, batches of 32, a few seconds). It then replays
``spike_10x`` (20 qps, 200 qps for 20 min, back to 20 qps; 4 h) through the same
policy and alert objects the local scaler runs, and prints p99 wait, minutes over the
2-minute wait SLO and worker-hours against static provisioning for the peak, first for
the seed rules and then for other sustained-for windows.
Target: seed rules keep p99 wait < 120 s with <= 50% of the static-peak worker-hours.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from tenfold.autoscale.config import AutoscaleConfig
from tenfold.autoscale.rules import SCALE_DOWN, SCALE_UP, ScalingConfig
from tenfold.autoscale.service import ServiceModel
from tenfold.autoscale.simulate import simulate
from tenfold.autoscale.traces import example_trace_path, load_trace


def measure_embed(batch_size: int = 32, seconds: float = 5.0) -> ServiceModel:
    import torch

    from tenfold.examples.embed import Embed
    from tenfold.examples.sentences import sentences

    torch.set_num_threads(1)  # one worker process = one core's worth here
    model = Embed()
    model.load()
    batch = sentences(batch_size * 4, 7)
    latencies: list[float] = []
    items = 0
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds or len(latencies) < 3:
        chunk = batch[(i % 4) * batch_size : (i % 4 + 1) * batch_size]
        t0 = time.perf_counter()
        model.predict(chunk)
        latencies.append(time.perf_counter() - t0)
        items += len(chunk)
        i += 1
    elapsed = time.perf_counter() - start
    latencies.sort()
    return ServiceModel(
        items_per_s=items / elapsed,
        batch_latency_s=latencies[len(latencies) // 2],
        batch_size=batch_size,
        source=f"embed measured here: batch {batch_size}, {len(latencies)} batches",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="profile.json from tenfold profile")
    parser.add_argument("--worker-rps", type=float, help="constant items/s per worker")
    args = parser.parse_args()
    base = AutoscaleConfig()
    if args.profile:
        service = ServiceModel.from_profile(args.profile, base.simulate.batch_size)
    elif args.worker_rps:
        service = ServiceModel.constant(args.worker_rps)
    else:
        service = measure_embed(base.simulate.batch_size)
    trace = load_trace(example_trace_path("spike_10x"))
    print(f"service: {service.source}")
    print(
        f"per-worker: {service.items_per_s:.1f} items/s, batch p50 {service.batch_latency_s:.3f} s"
    )
    print(
        f"trace spike_10x: {trace.duration_s / 3600:g} h, peak {trace.peak_qps:g} qps; "
        f"tick {base.tick_s:g} s, worker start-up {base.simulate.worker_startup_s:g} s"
    )
    header = (
        f"{'up window':>9} {'down window':>11} {'p50 wait':>8} {'p99 wait':>8} "
        f"{'SLO min':>7} {'peak w':>6} {'worker-h':>8} {'static-h':>8} {'ratio':>6}"
    )
    print(header)
    seed = None
    for up_s in (120, 60, 30):
        for down_s in (600, 300, 120):
            rules = (
                replace(SCALE_UP, sustained_for_s=up_s),
                replace(SCALE_DOWN, sustained_for_s=down_s),
            )
            cfg = replace(base, scaling=ScalingConfig(rules=rules, min_workers=2, max_workers=50))
            s = simulate(trace, service, cfg).summary
            if (up_s, down_s) == (120, 600):
                seed = s
            mark = "  <- seed rules" if (up_s, down_s) == (120, 600) else ""
            print(
                f"{up_s:>8}s {down_s:>10}s {s.wait_p50_s:>7g}s {s.wait_p99_s:>7g}s "
                f"{s.slo_minutes_violated:>7} {s.peak_workers:>6} {s.worker_hours:>8.2f} "
                f"{s.static_peak_worker_hours:>8.2f} {s.worker_hours_vs_static:>6.2f}{mark}"
            )
    assert seed is not None
    ok_wait = seed.wait_p99_s < 120
    ok_cost = seed.worker_hours_vs_static <= 0.5
    print(
        f"seed rules: p99 wait {seed.wait_p99_s:g} s "
        f"(target < 120: {'met' if ok_wait else 'MISSED'}), "
        f"worker-hours {seed.worker_hours_vs_static:.0%} of static peak "
        f"(target <= 50%: {'met' if ok_cost else 'MISSED'}), "
        f"{seed.slo_minutes_violated} minutes over the {seed.slo_wait_s:g} s wait SLO"
    )


if __name__ == "__main__":
    main()
