"""Serving benchmark for the `embed` example (all-MiniLM-L6-v2), one command:

    python benchmarks/serve_bench.py [--seconds 20] [--concurrency 64] [--no-litserve]

Closed-loop load (concurrency 64, aiohttp in its own process), distinct English-like
sentences of 6-30 words in random order, one sentence per request. Reports, measured in
ONE run: (a) the naive in-process loop (encode consecutive batches of 32), (b) tenfold with
batching (defaults: max_batch_size 32, batch_timeout_ms 10, length-aware), (c) tenfold with
max_batch_size=1, (d) LitServe with max_batch_size=32, batch_timeout=0.01 (installed here
with pip; not a tenfold dependency); items/s, p50/p99 and server CPU (cores), the ratios
the serving issue targets, and a batch sweep in the seed table's format.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _harness import HERE, SERVE_EMBED, ensure, measure_server

PRICE_PER_HOUR = 1.006  # g5.xlarge on demand, the seed table's price


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20, help="measured seconds per server")
    p.add_argument("--warmup", type=float, default=4)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--no-litserve", action="store_true")
    p.add_argument("--sweep", default="1,2,4,8,16,32,64")
    args = p.parse_args()
    ensure("aiohttp", "psutil", *([] if args.no_litserve else ["litserve"]))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)

    # The result cache off: this measures batching. (With it on, a fast machine cycles
    # through the sentence pool and the repeats become cache hits.)
    tenfold = [*SERVE_EMBED, "--no-cache"]
    runs: dict[str, dict[str, object]] = {}
    print("(a) raw loop + sweep ...", flush=True)
    raw = json.loads(
        subprocess.run(
            [
                sys.executable,
                str(HERE / "_raw_embed.py"),
                "--seconds",
                str(args.seconds),
                "--sweep",
                args.sweep,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    print("(b) tenfold, batching ...", flush=True)
    runs["b"] = measure_server("tenfold", tenfold, "/readyz", "/v1/models/embed/predict", args)
    print("(c) tenfold, max_batch_size=1 ...", flush=True)
    runs["c"] = measure_server(
        "tenfold-b1",
        [*tenfold, "--max-batch-size", "1"],
        "/readyz",
        "/v1/models/embed/predict",
        args,
    )
    if not args.no_litserve:
        print("(d) LitServe, max_batch_size=32, batch_timeout=0.01 ...", flush=True)
        runs["d"] = measure_server(
            "litserve",
            [sys.executable, str(HERE / "_litserve_embed.py"), "{port}"],
            "/health",
            "/predict",
            args,
        )

    a = raw["raw"]["items_per_s"]
    labels = {
        "b": "(b) tenfold, batching",
        "c": "(c) tenfold, max_batch_size=1",
        "d": "(d) LitServe, batch 32 / 10 ms",
    }
    print()
    print(
        f"{'configuration':34} {'items/s':>8} {'x raw':>6} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'server CPU':>10} {'errors':>6}"
    )
    print(
        f"{'(a) raw loop, batches of 32':34} {a:8.1f} {1.0:6.2f} {'':>8} {'':>8} {'':>10} {'':>6}"
    )
    for key, r in runs.items():
        errors = r["completed"] - r["ok"]
        print(
            f"{labels[key]:34} {r['items_per_s']:8.1f} {r['items_per_s'] / a:6.2f} "
            f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['server_cpu_cores']:9.2f}c {errors:6d}"
        )
    b, c = runs["b"], runs["c"]
    print()
    print(f"(b)/(a) = {b['items_per_s'] / a:.2f}   target >= 1.0")
    print(f"(b)/(c) = {b['items_per_s'] / c['items_per_s']:.2f}   target >= 3")
    if "d" in runs:
        d = runs["d"]
        print(
            f"(b)/(d) = {b['items_per_s'] / d['items_per_s']:.2f}   target >= 1.4 "
            f"(p99 {b['p99_ms']:.0f} ms vs {d['p99_ms']:.0f} ms: "
            f"{'equal or lower' if b['p99_ms'] <= d['p99_ms'] else 'HIGHER'})"
        )
    print(f"load generator CPU: {max(r['client_cpu_cores'] for r in runs.values()):.2f} cores")

    print()
    print(
        "Batch sweep (in-process encode, random-order sentences; cost at "
        f"${PRICE_PER_HOUR}/GPU-hour... here a CPU-hour at that price):"
    )
    print(f"{'batch':>5} {'latency ms':>11} {'items/s':>8} {'relative':>8} {'$ per 1K items':>15}")
    base = raw["sweep"][0]["items_per_s"] if raw.get("sweep") else 1.0
    for row in raw.get("sweep", []):
        cost_1k = PRICE_PER_HOUR / 3600 / row["items_per_s"] * 1000
        print(
            f"{row['batch_size']:5d} {row['latency_ms']:11.1f} {row['items_per_s']:8.1f} "
            f"{row['items_per_s'] / base:7.2f}x {cost_1k:15.5f}"
        )
    (HERE / ".serve_bench.json").write_text(json.dumps({"raw": raw, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
