"""Optimize the embed example on this machine and print the variant table.

    PYTHONPATH=src python benchmarks/optimize_bench.py [--samples 64] [--slice-s 0.4]
    PYTHONPATH=src python benchmarks/optimize_bench.py --out opt/       # keep the variants
    python benchmarks/optimize_bench.py --serve opt/onnx-int8 [--seconds 10]

One run: every variant is measured interleaved with torch fp32 (the ratios are
against torch fp32 in that same run). Target (issue 7): the recommended variant is
>= 1.8x torch fp32 at batch 32 with min cosine >= 0.98.

``--serve DIR`` instead serves the embed example through tenfold twice, as is (torch
fp32) and with ``--variant DIR``, under the serving benchmark's closed-loop load
(distinct sentences, cache off), and prints items/s of both. Target: >= 1.5x.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tenfold.optimize.cli import set_threads
from tenfold.optimize.optimizer import OptimizeConfig, optimize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="calibration sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--slice-s", type=float, default=0.4, help="seconds per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and ORT threads")
    parser.add_argument("--out", type=Path, default=None, help="keep the variants here")
    parser.add_argument("--serve", type=Path, default=None, help="variant dir to serve")
    parser.add_argument("--seconds", type=float, default=10, help="--serve: seconds per server")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if args.threads:
        set_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        config = OptimizeConfig(
            out_dir=out,
            batch_size=args.batch_size,
            samples=args.samples,
            slice_s=args.slice_s,
            rounds=args.rounds,
        )
        report = optimize("embed", config, progress=lambda m: print(f"  .. {m}", flush=True))
    print()
    print(f"{report.hardware}, {report.threads} threads, {report.samples} sentences")
    header = f"{'variant':<11} {'batch 1':>8} {'batch ' + str(args.batch_size):>9} {'size':>6}"
    print(header + "  cosine mean/min   top-10   items/s b1 / b" + str(args.batch_size) + "   gate")
    for r in report.results:
        if r.skipped_reason:
            print(f"{r.name:<11} skipped: {r.skipped_reason}")
            continue
        q = r.quality
        assert q is not None
        print(
            f"{r.name:<11} {r.speedup_batch1:>7.2f}x {r.speedup_batch:>8.2f}x {r.size_ratio:>5.2f}x"
            f"  {q.mean_cosine:.4f} / {q.min_cosine:.4f}  {q.topk_agreement:.3f}"
            f"   {r.items_per_s_batch1:8.1f} / {r.items_per_s_batch:6.1f}"
            f"   {'pass' if r.passed_gate else 'FAIL'}"
        )
    best = report.result(report.recommended)
    met = (
        (best.speedup_batch or 0.0) >= 1.8
        and best.quality is not None
        and (best.quality.min_cosine or 0.0) >= 0.98
    )
    print(
        f"\nrecommended: {report.recommended} ({best.speedup_batch:.2f}x at batch "
        f"{args.batch_size}); target >= 1.8x with min cosine >= 0.98: {'MET' if met else 'NOT MET'}"
    )
    print(f"total {time.perf_counter() - started:.0f} s")


def serve(args: argparse.Namespace) -> None:
    import os
    import sys

    from _harness import measure_server

    base = [sys.executable, "-m", "tenfold", "serve", "--example", "embed", "--port", "{port}"]
    base += ["--no-cache", "--log-level", "warning"]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    runs = {}
    for name, argv in (
        ("torch-fp32", base),
        (args.serve.name, [*base, "--variant", str(args.serve.resolve())]),
    ):
        print(f"serving {name} ...", flush=True)
        runs[name] = measure_server(
            f"optimize-{name}", argv, "/readyz", "/v1/models/embed/predict", args
        )
    base_rate = float(runs["torch-fp32"]["items_per_s"])  # type: ignore[arg-type]
    print(
        f"{'served model':12} {'items/s':>8} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    for name, r in runs.items():
        rate = float(r["items_per_s"])  # type: ignore[arg-type]
        errors = int(r["completed"]) - int(r["ok"])  # type: ignore[call-overload]
        print(
            f"{name:12} {rate:8.1f} {rate / base_rate:5.2f}x {r['p50_ms']:8.1f} "
            f"{r['p99_ms']:8.1f} {errors:6d}"
        )
    ratio = float(runs[args.serve.name]["items_per_s"]) / base_rate  # type: ignore[arg-type]
    print(f"served {args.serve.name} / torch fp32 = {ratio:.2f}x   target >= 1.5")


if __name__ == "__main__":
    main()
