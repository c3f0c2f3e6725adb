"""Cache micro-benchmark: memory backend lookups/s on one core, Redis loopback latency.

Run: ``PYTHONPATH=src python benchmarks/cache_bench.py [--seconds 2] [--redis URL] [--no-http]``

The HTTP part (``_cache_http.py``) serves the ``embed`` example under a Zipf-like workload
with the result cache off, on memory and on Redis, and measures hit vs miss latency and
the embedding cache on a batch workload with 80% known items.

Everything is measured in one run and printed with ratios. Targets (issue 3): the
memory backend does >= 20,000 lookups/s on one core; with ~50% repeats, throughput
>= 1.8x cache-off; a hit adds <= 1 ms p50 over the server's floor with Redis on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio

from tenfold.cache import (
    MemoryBackend,
    MemoryConfig,
    ResilientBackend,
    ResultCache,
    from_url,
)

TARGET_LOOKUPS_PER_S = 20_000


async def rate(op: Callable[[int], Awaitable[object]], seconds: float) -> float:
    """Operations per second of ``op(i)`` run back to back for about ``seconds``."""
    n, i = 0, 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(1000):
            await op(i)
            i += 1
        n += 1000
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - started)


async def latencies_us(op: Callable[[int], Awaitable[object]], count: int) -> list[float]:
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        await op(i)
        out.append((time.perf_counter() - t0) * 1e6)
    return sorted(out)


async def concurrent_rate(
    op: Callable[[int], Awaitable[object]], concurrency: int, seconds: float
) -> float:
    """Calls per second of ``op(i)`` from ``concurrency`` callers at once."""
    n = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def caller(i: int) -> None:
        nonlocal n
        while time.perf_counter() < deadline:
            await op(i)
            i += concurrency
            n += 1

    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return n / (time.perf_counter() - started)


def pct(sorted_us: list[float], q: float) -> float:
    return sorted_us[min(len(sorted_us) - 1, int(q * len(sorted_us)))]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0, help="per throughput measurement")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="'' to skip Redis")
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--no-http", action="store_true", help="only the micro-benchmark")
    ap.add_argument("--http-seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=float, default=0.5, help="share of repeated requests")
    return ap.parse_args()


async def main(args: argparse.Namespace) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    keys = [f"bench:{i}" for i in range(args.keys)]
    value = b"x" * 1536  # a 384-float32 embedding
    mem = MemoryBackend(MemoryConfig(max_entries=args.keys * 2, max_bytes=1 << 30))
    await mem.set_many(dict.fromkeys(keys, value), ttl_s=3600)
    nk = len(keys)

    async def mem_get(i: int) -> object:
        return await mem.get_many([keys[i % nk]])

    resilient = ResilientBackend(mem)

    async def res_get(i: int) -> object:
        return await resilient.get_many([keys[i % nk]])

    batch = 32

    async def mem_batch(i: int) -> object:
        j = (i * batch) % (nk - batch)
        return await mem.get_many(keys[j : j + batch])

    rcache = ResultCache(ResilientBackend(MemoryBackend()))
    inputs = [{"text": f"sentence number {i}", "params": {"k": 3}} for i in range(1000)]

    async def compute() -> list[float]:
        return [0.25] * 16

    for x in inputs:
        await rcache.get_or_compute(model="embed", version="1", input=x, compute=compute)

    async def result_hit(i: int) -> object:
        return await rcache.get_or_compute(
            model="embed", version="1", input=inputs[i % 1000], compute=compute
        )

    print(f"cache micro-benchmark (one core, {args.seconds:.1f} s per figure)")
    mem_rate = await rate(mem_get, args.seconds)
    res_rate = await rate(res_get, args.seconds)
    batch_rate = await rate(mem_batch, args.seconds) * batch
    hit_rate = await rate(result_hit, args.seconds)
    print(f"  memory get_many, 1 key         {mem_rate:12,.0f} lookups/s")
    print(f"  memory + resilient wrapper      {res_rate:12,.0f} lookups/s")
    print(f"  memory get_many, 32-key batch   {batch_rate:12,.0f} items/s")
    print(f"  result cache hit (key+decode)   {hit_rate:12,.0f} requests/s")
    verdict = "PASS" if mem_rate >= TARGET_LOOKUPS_PER_S else "FAIL"
    print(
        f"  target >= {TARGET_LOOKUPS_PER_S:,}/s: {verdict} "
        f"({mem_rate / TARGET_LOOKUPS_PER_S:.1f}x target; resilient wrapper keeps "
        f"{res_rate / mem_rate:.0%}; result-cache hit path keeps "
        f"{hit_rate / TARGET_LOOKUPS_PER_S:.1f}x target)"
    )

    if not args.redis:
        return
    rb = from_url(args.redis + ("&" if "?" in args.redis else "?") + "timeout_ms=1000")
    prefix = f"tenfold-bench:{uuid.uuid4().hex[:8]}:"
    rkeys = [prefix + str(i) for i in range(1000)]
    try:
        await rb.set_many(dict.fromkeys(rkeys, value), ttl_s=120)

        async def redis_get(i: int) -> object:
            return await rb.get_many([rkeys[i % 1000]])

        async def redis_batch(i: int) -> object:
            j = (i * batch) % (1000 - batch)
            return await rb.get_many(rkeys[j : j + batch])

        await latencies_us(redis_get, 200)  # warm the connection
        single = await latencies_us(redis_get, 3000)
        multi = await latencies_us(redis_batch, 1000)
        mem_single = await latencies_us(mem_get, 3000)
        # 64 concurrent callers: the backend shares round trips; redis-py alone (what the
        # backend did before) sends one MGET per call.
        plain = redis.asyncio.Redis.from_url(args.redis)

        async def plain_get(i: int) -> object:
            return await plain.mget([rkeys[i % 1000]])

        try:
            await concurrent_rate(plain_get, 64, 0.2)  # fill its connection pool
            one_each = await concurrent_rate(plain_get, 64, args.seconds)
            shared = await concurrent_rate(redis_get, 64, args.seconds)
        finally:
            await plain.aclose()
    finally:
        await rb.delete_prefix(prefix)
        await rb.close()
    print(f"redis loopback ({args.redis})")
    print(
        f"  get 1 key    p50 {pct(single, 0.5):7.0f} us  p99 {pct(single, 0.99):7.0f} us  "
        f"mean {statistics.fmean(single):7.0f} us"
    )
    print(
        f"  get 32 keys  p50 {pct(multi, 0.5):7.0f} us  p99 {pct(multi, 0.99):7.0f} us  "
        f"({pct(multi, 0.5) / batch:.1f} us/item)"
    )
    print(f"  memory get 1 key p50 {pct(mem_single, 0.5):7.1f} us")
    print(
        f"  ratios: redis/memory p50 latency {pct(single, 0.5) / pct(mem_single, 0.5):.0f}x; "
        f"32-key MGET costs {pct(multi, 0.5) / pct(single, 0.5):.1f}x one GET "
        f"(vs 32x for 32 round trips); redis hit p50 {pct(single, 0.5) / 1000:.2f} ms "
        f"(<= 1 ms target for the added hit cost)"
    )
    print(
        f"  64 concurrent 1-key gets: {shared:,.0f}/s in shared round trips vs {one_each:,.0f}/s "
        f"one round trip each (redis-py alone): {shared / one_each:.1f}x"
    )


if __name__ == "__main__":
    args = parse_args()
    if not args.no_http:
        # Before pinning this process to one core: the servers it starts inherit affinity.
        from _cache_http import run_http

        run_http(args)
    asyncio.run(main(args))
