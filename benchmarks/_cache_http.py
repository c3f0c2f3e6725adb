"""The HTTP part of the cache benchmark: the `embed` example under a Zipf-like workload
(about half the requests repeat a popular sentence), cache off / memory / Redis;
hit vs miss latency; a hit's cost over the server's floor; and the embedding cache on a
batch workload with 80% known items (real MiniLM, in-process)."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
import uuid

from _harness import (
    ROOT,
    SERVE_EMBED,
    ensure,
    free_port,
    measure_server,
    stop_tree,
    wait_http,
)

TENFOLD = SERVE_EMBED


def floor_vs_hit_ms(redis_url: str, probes: int = 1000) -> tuple[float, float, float]:
    """p50 of GET /healthz (the floor) and of a result-cache hit, on one Redis-backed
    server, sequentially (one client, so no queueing hides in the figure)."""
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [a.replace("{port}", str(port)) for a in TENFOLD] + ["--cache", redis_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            body = {"input": f"a sentence to cache {uuid.uuid4().hex}"}
            c.post("/v1/models/embed/predict", json=body)  # miss, stores

            def timed(fn: object) -> float:
                t0 = time.perf_counter()
                fn()  # type: ignore[operator]
                return 1000 * (time.perf_counter() - t0)

            floor, hit, hit_hdr = [], [], []
            for _ in range(probes):
                floor.append(timed(lambda: c.get("/healthz")))
                hit.append(
                    timed(
                        lambda: hit_hdr.append(
                            c.post("/v1/models/embed/predict", json=body).headers["x-tenfold-cache"]
                        )
                    )
                )
            assert set(hit_hdr) == {"hit"}, set(hit_hdr)
            mem_like = statistics.median(floor)
            return mem_like, statistics.median(hit), statistics.quantiles(hit, n=100)[98]
    finally:
        stop_tree(proc)


def embedding_cache_effect(
    known_share: float = 0.8, batch: int = 32, rounds: int = 6
) -> dict[str, float]:
    """Time to embed batches of 32 where 80% of the items are already cached, vs no cache."""
    from tenfold.cache import EmbeddingCache, MemoryBackend
    from tenfold.examples.embed import load_sentence_transformer
    from tenfold.examples.sentences import sentences

    model = load_sentence_transformer()
    texts = sentences(batch * rounds, seed=11)
    model.encode(texts[:batch])
    cache = EmbeddingCache(MemoryBackend(), model="embed", version="bench")
    calls: list[int] = []

    async def compute(items: list[str]) -> list[object]:
        calls.append(len(items))
        return list(model.encode(items, batch_size=max(1, len(items))))

    async def run() -> tuple[float, float]:
        known = int(batch * known_share)
        # pre-warm 80% of each batch
        for r in range(rounds):
            chunk = texts[r * batch : (r + 1) * batch]
            await cache.embed_many(chunk[:known], compute)
        calls.clear()
        t0 = time.perf_counter()
        for r in range(rounds):
            model.encode(texts[r * batch : (r + 1) * batch], batch_size=batch)
        no_cache = time.perf_counter() - t0
        t0 = time.perf_counter()
        for r in range(rounds):
            await cache.embed_many(texts[r * batch : (r + 1) * batch], compute)
        cached = time.perf_counter() - t0
        return no_cache, cached

    no_cache, cached = asyncio.run(run())
    return {"no_cache_s": no_cache, "cached_s": cached, "computed_items": float(sum(calls))}


def _with_param(url: str, param: str) -> str:
    return url + ("&" if "?" in url else "?") + param


def clear_redis(url: str) -> int:
    """Delete the tenfold keys in ``url``'s database: a shared Redis keeps an earlier run's
    entries (TTL 1 h), which would turn this run's first sights into hits."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="tenfold:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        return len(keys)
    finally:
        client.close()


def run_http(args: argparse.Namespace) -> None:
    ensure("aiohttp", "psutil", "httpx")
    load = ("--repeat", str(args.repeat), "--hot", "200")
    runs = {}
    print(
        f"HTTP: embed example, Zipf-like workload ({args.repeat:.0%} repeats), "
        f"concurrency {args.concurrency}, {args.http_seconds:.0f} s each",
        flush=True,
    )
    ns = argparse.Namespace(
        concurrency=args.concurrency, seconds=args.http_seconds, warmup=args.warmup
    )
    for name, extra in (
        ("off", ["--no-cache"]),
        ("memory", ["--cache", "memory://"]),
        *([("redis", ["--cache", args.redis])] if args.redis else []),
        *(
            [("redis+near", ["--cache", _with_param(args.redis, "near_cache_s=30")])]
            if args.redis
            else []
        ),
    ):
        print(f"  cache {name} ...", flush=True)
        if name.startswith("redis"):
            cleared = clear_redis(args.redis)
            print(f"    (cleared {cleared} tenfold keys left by earlier runs)", flush=True)
        runs[name] = measure_server(
            f"cache-{name}", TENFOLD + extra, "/readyz", "/v1/models/embed/predict", ns, load
        )
    off = runs["off"]["items_per_s"]
    print()
    print(
        f"  {'cache':12} {'req/s':>8} {'x off':>6} {'hit share':>9} {'hit p50':>8} "
        f"{'hit p99':>8} {'miss p50':>8} {'miss p99':>9}"
    )
    for name, r in runs.items():
        share = r["hits"] / r["completed"] if r["completed"] else 0.0
        print(
            f"  {name:12} {r['items_per_s']:8.1f} {r['items_per_s'] / off:6.2f} {share:9.0%} "
            f"{r['hit_p50_ms']:8.1f} {r['hit_p99_ms']:8.1f} {r['miss_p50_ms']:8.1f} "
            f"{r['miss_p99_ms']:9.1f}"
        )
    verdicts = ", ".join(
        f"{name} {'PASS' if runs[name]['items_per_s'] / off >= 1.8 else 'FAIL'}"
        for name in ("memory", "redis", "redis+near")
        if name in runs
    )
    print(
        f"  throughput with the cache / without: memory {runs['memory']['items_per_s'] / off:.2f}x"
        + "".join(
            f", {name} {runs[name]['items_per_s'] / off:.2f}x"
            for name in ("redis", "redis+near")
            if name in runs
        )
        + f"   target >= 1.8x: {verdicts}"
    )
    if args.redis:
        m_floor, m_hit, _ = floor_vs_hit_ms("memory://")
        floor, hit, hit99 = floor_vs_hit_ms(args.redis)
        print(
            f"  one client: memory-cache server: GET /healthz p50 {m_floor:.2f} ms, predict hit "
            f"p50 {m_hit:.2f} ms (the predict path's floor: no model, no network)"
        )
        print(
            f"  one client, Redis on loopback: GET /healthz p50 {floor:.2f} ms, predict hit "
            f"p50 {hit:.2f} ms (p99 {hit99:.2f})"
        )
        print(
            f"  a Redis hit adds {hit - m_hit:.2f} ms over the in-process hit "
            f"(target <= 1 ms: {'PASS' if hit - m_hit <= 1.0 else 'FAIL'}) and "
            f"{hit - floor:.2f} ms over GET /healthz"
        )
    emb = embedding_cache_effect()
    speedup = emb["no_cache_s"] / emb["cached_s"]
    print(
        f"  embedding cache, batches of 32 with 80% known: {speedup:.2f}x "
        f"faster than no cache (model saw {emb['computed_items']:.0f} of {32 * 6} items)"
    )
    print()
