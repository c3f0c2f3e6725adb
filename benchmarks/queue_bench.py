"""Queue throughput, in one run.

    PYTHONPATH=src python benchmarks/queue_bench.py [--seconds 5] [--e2e-jobs 2000]

Raw part: enqueue + claim + complete cycles per second, in batches of 32.
For each backend, repeatedly: enqueue 32 jobs (one ``enqueue_many`` call, or 32
``enqueue`` calls), claim them in one ``claim``, store the 32 results with one ``complete_many``
(each write still fenced by its own lease token, as the worker does).
One process, one event loop. Prints jobs/s per backend and the ratios measured
in this run. Target: SQLite >= 2,000 cycles/s.

End-to-end part (``--e2e-jobs``, 0 to skip): the job API on a real socket
(uvicorn, in this process), 2 ``classify`` worker processes on Redis; submit
jobs over HTTP (64 in flight), long-poll each until done; jobs/s from the first
submit to the last result. (The Celery comparison of the issue is not built.)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

from tenfold.queue import QueueBackend, from_url

BATCH = 32


async def cycles(q: QueueBackend, seconds: float, *, batched_enqueue: bool) -> float:
    model = "bench"
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        inputs = [{"i": done + i} for i in range(BATCH)]
        if batched_enqueue:
            await q.enqueue_many(model, inputs)
        else:
            for x in inputs:
                await q.enqueue(model, x)
        claims = await q.claim(model, BATCH, wait_ms=0, lease_ms=30_000, worker_id="bench")
        assert len(claims) == BATCH, len(claims)
        oks = await q.complete_many([(c.job.id, c.token, c.job.input) for c in claims])
        assert all(oks)
        done += BATCH
    return done / (time.perf_counter() - t0)


async def end_to_end(redis_url: str, n_jobs: int) -> float:
    import socket
    import threading

    import httpx
    import uvicorn
    from fastapi import FastAPI

    from tenfold.examples.classify import Classify
    from tenfold.queue.api import queue_router
    from tenfold.queue.pool import LocalWorkerPool

    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    url = f"{redis_url}?prefix={prefix}"
    app = FastAPI()
    app.include_router(queue_router(from_url(url), {"classify": Classify}, max_queue_depth=10**6))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    pool = LocalWorkerPool("classify", url, processes=2, extra_args=["--log-level", "WARNING"])
    pool.start()
    flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            while not server.started:
                await asyncio.sleep(0.05)

            async def one() -> None:
                r = await http.post("/v1/models/classify/jobs", json={"input": flower})
                job_id = r.json()["id"]
                while True:
                    job = (await http.get(f"/v1/jobs/{job_id}", params={"wait_s": 10})).json()
                    if job["status"] == "succeeded":
                        return
                    if job["status"] in ("failed", "dead", "cancelled"):
                        raise RuntimeError(job)

            await one()  # warm-up: both workers loaded the model
            await asyncio.sleep(2.0)
            sem = asyncio.Semaphore(64)

            async def limited() -> None:
                async with sem:
                    await one()

            t0 = time.perf_counter()
            await asyncio.gather(*(limited() for _ in range(n_jobs)))
            return n_jobs / (time.perf_counter() - t0)
    finally:
        pool.stop(grace_s=5)
        server.should_exit = True
        thread.join(10)
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--e2e-jobs", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends = {
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "redis": f"{args.redis}?prefix=bench{uuid.uuid4().hex[:8]}",
        }
        for name, url in backends.items():
            for batched in (True, False):
                q = from_url(url)
                try:
                    rate = await cycles(q, args.seconds, batched_enqueue=batched)
                finally:
                    await q.close()
                label = f"{name} ({'enqueue_many' if batched else '32 x enqueue'})"
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
    if args.e2e_jobs:
        rate = await end_to_end(args.redis, args.e2e_jobs)
        print(f"end-to-end classify, HTTP + 2 workers on Redis: {rate:.0f} jobs/s")


if __name__ == "__main__":
    asyncio.run(main())
