"""Autoscaling figure: the default rules on the sudden 10x spike trace.

    python benchmarks/autoscale_bench.py [--profile profile.json | --worker-rps R]
                                         [--peak-workers 10]

Without a flag it measures the per-worker rate of the ``embed`` example here (one
process, one torch thread, batches of 32, a few seconds). It also measures a real
``tenfold worker embed`` start-up on this machine (process start to the first job's
result, model load included) and simulates with it, and again with the config's 60 s
(a container scheduled on a fresh node, image pulled). It then replays
``spike_10x`` (20 qps, 200 qps for 20 min, back to 20 qps; 4 h), scaled so that its
peak keeps ``--peak-workers`` workers 95% busy (the base load then half-fills the two
warm workers), through the same
policy and alert objects the local scaler runs, and prints p99 wait, minutes over the
2-minute wait SLO and worker-hours against static provisioning for the peak, first for
the seed rules and then for other sustained-for windows. The same windows then replay
``daily_cycle`` scaled the same way, counting scale events: shorter windows that help on the
spike also scale far more often, and cost more, on smooth traffic.
Target: seed rules keep p99 wait < 120 s with <= 50% of the static-peak worker-hours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tenfold.autoscale.config import AutoscaleConfig
from tenfold.autoscale.rules import SCALE_DOWN, SCALE_UP, ScalingConfig
from tenfold.autoscale.service import ServiceModel
from tenfold.autoscale.simulate import Summary, simulate
from tenfold.autoscale.traces import Trace, example_trace_path, load_trace


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


def measure_startup_s() -> float:
    """Seconds from ``tenfold worker embed`` starting to the first job's result."""
    from tenfold.queue import JobStatus, from_url

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/q.db"

        async def run() -> float:
            queue = from_url(url)
            job = await queue.enqueue("embed", "warm up, please")
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            env["PYTHONPATH"] = os.pathsep.join(
                p
                for p in (str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH"))
                if p
            )
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "tenfold.queue.cli", "worker", "embed", "--queue", url],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                done = await queue.wait(job.id, 120)
                elapsed = time.perf_counter() - t0
                if done.status is not JobStatus.SUCCEEDED:
                    raise RuntimeError(f"the start-up job ended {done.status}")
                return elapsed
            finally:
                proc.terminate()
                proc.wait(30)
                await queue.close()

        return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="profile.json from tenfold profile")
    parser.add_argument("--worker-rps", type=float, help="constant items/s per worker")
    parser.add_argument(
        "--peak-workers",
        type=int,
        default=10,
        help="scale the trace so its peak keeps this many workers 95%% busy (0: as shipped)",
    )
    args = parser.parse_args()
    base = AutoscaleConfig()
    if args.profile:
        service = ServiceModel.from_profile(args.profile, base.simulate.batch_size)
    elif args.worker_rps:
        service = ServiceModel.constant(args.worker_rps)
    else:
        service = measure_embed(base.simulate.batch_size)
    shipped = load_trace(example_trace_path("spike_10x"))
    trace = shipped
    if args.peak_workers:
        # The shipped trace is in absolute QPS (20 -> 200); how many workers that needs
        # depends on how fast this machine is at the moment (39 to 122 items/s per worker
        # seen here). Scaling it to a fixed peak fleet keeps the figure about the rules.
        trace = shipped.scaled_to(args.peak_workers * 0.95 * service.items_per_s)
    startup_s = measure_startup_s()
    print(f"service: {service.source}")
    print(
        f"per-worker: {service.items_per_s:.1f} items/s, batch p50 {service.batch_latency_s:.3f} s"
    )
    print(f"worker start-up measured here: {startup_s:.1f} s (process start to first result)")
    print(
        f"trace spike_10x: {trace.duration_s / 3600:g} h, {min(trace.qps[:-1]):.0f} -> "
        f"{trace.peak_qps:.0f} qps"
        + (
            f" (shipped 20 -> 200, scaled so the peak keeps {args.peak_workers} workers 95% busy)"
            if args.peak_workers
            else ""
        )
    )
    verdicts = []
    for label, startup in (
        (f"start-up {startup_s:.0f} s (measured here)", round(startup_s, 1)),
        (f"start-up {base.simulate.worker_startup_s:g} s (config default)", None),
    ):
        cfg = (
            base
            if startup is None
            else replace(base, simulate=replace(base.simulate, worker_startup_s=startup))
        )
        seed = _table(trace, service, cfg, f"{label}, spike_10x")
        verdicts.append((label, seed))
    # How the seed rules fare as the spike grows (measured start-up), and as the quiet
    # hours around it grow (the shipped 4 h, or the same spike within 8 h or a day): is
    # there any size of 10x spike for which they meet both targets?
    measured = replace(base, simulate=replace(base.simulate, worker_startup_s=round(startup_s, 1)))
    # The other side of short windows: on smooth traffic they chase every wobble.
    daily = load_trace(example_trace_path("daily_cycle"))
    if args.peak_workers:
        daily = daily.scaled_to(args.peak_workers * 0.95 * service.items_per_s)
    for label, cfg in (
        (f"start-up {startup_s:.0f} s (measured here)", measured),
        (f"start-up {base.simulate.worker_startup_s:g} s (config default)", base),
    ):
        _table(
            daily,
            service,
            cfg,
            f"{label}, daily_cycle: 24 h, {min(daily.qps[:-1]):.0f} -> {daily.peak_qps:.0f} qps",
        )
    horizons_h = (4, 8, 24)
    print()
    print(f"seed rules by spike size and trace length (start-up {startup_s:.0f} s):")
    print(
        f"{'peak workers':>12} {'peak qps':>8} "
        + " ".join(f"{f'{h} h: p99 wait':>14} {'ratio':>5}" for h in horizons_h)
    )
    for peak in (3, 4, 5, 6, 8, 10, 15, 20):
        peak_qps = peak * 0.95 * service.items_per_s
        cells = []
        met = []
        for hours in horizons_h:
            times = (*shipped.times_s[:-1], max(shipped.times_s[-1], hours * 3600.0))
            scaled = Trace(times, shipped.qps).scaled_to(peak_qps)
            s = simulate(scaled, service, measured).summary
            if s.wait_p99_s < 120 and s.worker_hours_vs_static <= 0.5:
                met.append(f"{hours} h")
            cells.append(f"{s.wait_p99_s:>13g}s {s.worker_hours_vs_static:>5.2f}")
        print(
            f"{peak:>12} {peak_qps:>8.0f} "
            + " ".join(cells)
            + (f"  both targets met: {', '.join(met)}" if met else "")
        )
    print()
    for label, seed in verdicts:
        ok_wait = seed.wait_p99_s < 120
        ok_cost = seed.worker_hours_vs_static <= 0.5
        print(
            f"seed rules, {label}: p99 wait {seed.wait_p99_s:g} s "
            f"(target < 120: {'met' if ok_wait else 'MISSED'}), "
            f"worker-hours {seed.worker_hours_vs_static:.0%} of static peak "
            f"(target <= 50%: {'met' if ok_cost else 'MISSED'}), "
            f"{seed.slo_minutes_violated} minutes over the {seed.slo_wait_s:g} s wait SLO"
        )


def _table(trace: Any, service: ServiceModel, base: AutoscaleConfig, label: str) -> Summary:
    """The seed rules and other sustained-for windows; returns the seed rules' summary."""
    print()
    print(f"{label}, tick {base.tick_s:g} s:")
    header = (
        f"{'up window':>9} {'down window':>11} {'p50 wait':>8} {'p99 wait':>8} "
        f"{'SLO min':>7} {'peak w':>6} {'worker-h':>8} {'static-h':>8} {'ratio':>6} {'scalings':>8}"
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
                f"{s.static_peak_worker_hours:>8.2f} {s.worker_hours_vs_static:>6.2f} "
                f"{s.scale_ups + s.scale_downs:>8}{mark}"
            )
    assert seed is not None
    return seed


if __name__ == "__main__":
    main()
