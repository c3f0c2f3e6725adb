"""Queue throughput, in one run.

    python benchmarks/queue_bench.py [--seconds 5] [--no-celery]

Raw part: enqueue + claim + complete cycles per second, in batches of 32.
For each backend, repeatedly: enqueue 32 jobs (one ``enqueue_many`` call, 32 ``enqueue``
calls one after another, or 32 at once, as 32 API requests would: those share round trips,
one transaction on SQLite, one pipeline on Redis), claim them in one ``claim``, store the
32 results with one ``complete_many`` (each write still fenced by its own lease token, as
the worker does).
One process, one event loop. Prints jobs/s per backend and the ratios measured
in this run. Target: SQLite >= 2,000 cycles/s.

Then end to end against Celery, ``classify`` (target: tenfold >= 3x Celery's jobs/s)
and ``embed``, in the same run: ``benchmarks/celery_bench.py`` (HTTP API, 2 worker
processes, a client process, Redis; see its docstring), which also runs on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tenfold.queue import QueueBackend, from_url

BATCH = 32


MODES = {"many": "enqueue_many", "sequential": "32 x enqueue", "concurrent": "32 enqueue at once"}


async def cycles(q: QueueBackend, seconds: float, *, mode: str) -> float:
    model = "bench"
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        inputs = [{"i": done + i} for i in range(BATCH)]
        if mode == "many":
            await q.enqueue_many(model, inputs)
        elif mode == "sequential":
            for x in inputs:
                await q.enqueue(model, x)
        else:
            await asyncio.gather(*(q.enqueue(model, x) for x in inputs))
        claims = await q.claim(model, BATCH, wait_ms=0, lease_ms=30_000, worker_id="bench")
        assert len(claims) == BATCH, len(claims)
        oks = await q.complete_many([(c.job.id, c.token, c.job.input) for c in claims])
        assert all(oks)
        done += BATCH
    return done / (time.perf_counter() - t0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-celery", action="store_true", help="only the raw part")
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends = {
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "redis": f"{args.redis}?prefix=bench{uuid.uuid4().hex[:8]}",
        }
        for name, url in backends.items():
            for mode, mode_label in MODES.items():
                q = from_url(url)
                try:
                    rate = await cycles(q, args.seconds, mode=mode)
                finally:
                    await q.close()
                label = f"{name} ({mode_label})"
                results[label] = rate
                print(f"{label:32s} {rate:8.0f} enqueue+claim+complete cycles/s")
            if name == "redis":
                import redis

                client = redis.Redis.from_url(args.redis)
                prefix = url.split("prefix=")[1]
                for key in client.scan_iter(f"{prefix}:*"):
                    client.delete(key)
                client.close()
    base = results["sqlite (enqueue_many)"]
    print()
    for label, rate in results.items():
        print(f"{label:32s} {rate / base:5.2f}x of sqlite (enqueue_many)")
    print(f"SQLite target 2,000/s: {'met' if base >= 2000 else 'NOT met'} ({base:.0f}/s)")
    if args.no_celery:
        return
    import celery_bench

    ratios = {}
    for model in ("classify", "embed"):
        print()
        ratios[model] = celery_bench.compare(celery_bench.parse_args(["--model", model]))
    print()
    verdict = "met" if ratios["classify"] >= celery_bench.TARGET else "NOT met"
    print(
        f"end to end, tenfold / celery jobs/s: classify {ratios['classify']:.2f}x "
        f"(target >= {celery_bench.TARGET:.0f}x: {verdict}), embed {ratios['embed']:.2f}x"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(main())
