"""Closed-loop HTTP load generator (run as its own process so it does not share the
server's CPU accounting): CONCURRENCY clients, each sends its next request as soon as
the previous one answers. Prints one JSON line with counts, latencies and its own CPU.

    python benchmarks/_loadgen.py URL --concurrency 64 --seconds 20 --warmup 3

With ``--repeat R``, a share R of the requests repeats a popular sentence (Zipf over
``--hot``). Before the warm-up, every popular sentence is sent once, so that a repeat is a
repeat: without that, the first sight of each of the rarer popular sentences fell inside
the measured window, more of them the slower the machine (on a slow day ~10% of the
"repeats" were first sights, and a 50% repeat workload measured 45% cache hits).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from tenfold.examples.sentences import sentences


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> dict[str, object]:
    texts = sentences(args.sentences, seed=args.seed)
    random.Random(args.seed).shuffle(texts)
    hot = texts[: args.hot]
    fresh = itertools.cycle(texts[args.hot :])
    fresh_used = 0
    # Zipf-like popularity over the hot set: weight 1/rank.
    hot_weights = [1.0 / (rank + 1) for rank in range(len(hot))]
    rng = random.Random(args.seed + 1)
    latencies: list[float] = []
    latency_by_cache: dict[str, list[float]] = {"hit": [], "miss": []}
    statuses: dict[int, int] = {}
    next_index = 0
    primed = 0  # popular sentences sent (and answered 200) before the warm-up

    def next_text() -> str:
        nonlocal next_index, fresh_used
        if args.repeat > 0:
            if rng.random() < args.repeat:
                return rng.choices(hot, hot_weights)[0]
            fresh_used += 1
            return next(fresh)
        text = texts[next_index % len(texts)]
        next_index += 1
        return text

    t_start = time.perf_counter()
    cpu_at_start = cpu_s()  # the CPU count starts with the clock (not at the imports)
    t_measure = t_start + args.warmup
    t_end = t_measure + args.seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while True:
            now = time.perf_counter()
            if now >= t_end:
                return
            text = next_text()
            t0 = time.perf_counter()
            async with session.post(args.url, json={"input": text}) as resp:
                await resp.read()
                status = resp.status
                mark = resp.headers.get("x-tenfold-cache")
            t1 = time.perf_counter()
            if t_measure <= t1 <= t_end:  # completions inside the measured window
                latencies.append(t1 - t0)
                statuses[status] = statuses.get(status, 0) + 1
                if mark in latency_by_cache:
                    latency_by_cache[mark].append(t1 - t0)

    async def prime(session: aiohttp.ClientSession) -> None:
        """Send each popular sentence once (at most --concurrency at a time)."""
        gate = asyncio.Semaphore(max(1, args.concurrency))

        async def send(text: str) -> None:
            nonlocal primed
            async with gate, session.post(args.url, json={"input": text}) as resp:
                await resp.read()
                primed += resp.status == 200

        await asyncio.gather(*(send(text) for text in hot))

    async def one_open(session: aiohttp.ClientSession) -> None:
        text = next_text()
        t0 = time.perf_counter()
        async with session.post(args.url, json={"input": text}) as resp:
            await resp.read()
            status = resp.status
        t1 = time.perf_counter()
        if t_measure <= t1 <= t_end:
            latencies.append(t1 - t0)
            statuses[status] = statuses.get(status, 0) + 1

    async def open_loop(session: aiohttp.ClientSession) -> None:
        # Poisson arrivals at --rate per second, whatever the server's speed.
        arrivals = random.Random(args.seed + 2)
        tasks = []
        t_next = time.perf_counter()
        while t_next < t_end:
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
            tasks.append(asyncio.create_task(one_open(session)))
            t_next += arrivals.expovariate(args.rate)
        await asyncio.gather(*tasks)

    limit = args.concurrency if args.rate <= 0 else 0
    conn = aiohttp.TCPConnector(limit=limit)
    timeout = aiohttp.ClientTimeout(total=120)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    async with aiohttp.ClientSession(connector=conn, timeout=timeout, headers=headers) as session:
        if args.repeat > 0:
            await prime(session)
            if primed < len(hot):
                print(
                    f"WARNING: priming got {len(hot) - primed} of {len(hot)} popular sentences "
                    "answered other than 200: their first sights may fall in the window",
                    file=sys.stderr,
                    flush=True,
                )
            # The timed phases (warm-up, then the measured window) and the CPU count start
            # after it.
            cpu_at_start = cpu_s()
            shift = time.perf_counter() - t_start
            t_start, t_measure, t_end = t_start + shift, t_measure + shift, t_end + shift
        if args.rate > 0:
            await open_loop(session)
        else:
            await asyncio.gather(*(client(session) for _ in range(args.concurrency)))
    latencies.sort()
    n = len(latencies)

    def pct(p: float, values: list[float] = latencies) -> float:
        values = sorted(values)
        k = len(values)
        return 1000 * values[min(k - 1, int(p * k))] if k else float("nan")

    return {
        "completed": n,
        "ok": statuses.get(200, 0),
        "statuses": statuses,
        "items_per_s": statuses.get(200, 0) / args.seconds,
        "offered_per_s": args.rate or None,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "hits": len(latency_by_cache["hit"]),
        "hit_p50_ms": pct(0.50, latency_by_cache["hit"]),
        "hit_p99_ms": pct(0.99, latency_by_cache["hit"]),
        "miss_p50_ms": pct(0.50, latency_by_cache["miss"]),
        "miss_p99_ms": pct(0.99, latency_by_cache["miss"]),
        "client_cpu_s": cpu_s() - cpu_at_start,
        "wall_s": time.perf_counter() - t_start,
        # True if "fresh" sentences came round again (they would then be cache hits).
        "primed": primed,
        "wrapped": next_index > len(texts) or fresh_used > len(texts) - len(hot),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=3)
    # Enough that no run wraps around: a repeat would be a cache hit, not a fresh request.
    p.add_argument("--sentences", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--repeat",
        type=float,
        default=0.0,
        help="share of requests that repeat a popular sentence (Zipf over --hot); 0: all distinct",
    )
    p.add_argument("--hot", type=int, default=200, help="size of the popular set for --repeat")
    p.add_argument("--rate", type=float, default=0.0, help="open loop: Poisson arrivals/s")
    p.add_argument("--header", action="append", default=[], help="NAME: VALUE on every request")
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
