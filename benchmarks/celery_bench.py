"""End-to-end async jobs/s: tenfold's durable queue against Celery, in one run.

    python benchmarks/celery_bench.py [--model classify|embed] [--jobs N] [--warmup N]

Both systems run the ``classify`` example (sklearn iris model; or ``embed``, MiniLM, one
intra-op thread per worker process) with 2 worker processes on
the local Redis (127.0.0.1:6379), and are driven by a separate client process keeping 64
jobs in flight; jobs/s is counted from the first submit to the last result over ``--jobs``
jobs after ``--warmup`` jobs; latency is submit-to-result as the client sees it.

- tenfold: ``tenfold serve --example classify --queue redis://.../5 --no-local-workers``
  (API only) + 2 ``tenfold worker classify`` processes. Client: aiohttp,
  ``POST /v1/models/classify/jobs`` with ``Prefer: wait=5`` (the answer is the finished job
  when it completes within 5 s), then ``GET /v1/jobs/{id}?wait_s=5`` until succeeded.
- Celery: Redis broker and result backend (db 6), ``task_acks_late=True``,
  ``worker_prefetch_multiplier=1``, JSON serializer; ``celery worker -c 2 -P prefork``;
  the task loads ``Classify`` once per worker process and predicts one input. Client:
  64 threads each doing ``task.delay(x).get()`` in a loop.

Redis dbs 5 and 6 are flushed at start and end (``--tenfold-db``, ``--celery-db``): do
not point them at dbs holding anything else. Celery is a benchmark-only dependency,
installed on first use. Target (issue 4): tenfold >= 3x Celery's jobs/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import ROOT, ensure, free_port, stop_tree, tree_cpu_s, wait_http

IN_FLIGHT = 64
FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
TARGET = 3.0
REDIS = "redis://127.0.0.1:6379"

CELERY_APP = '''\
"""Celery side of benchmarks/celery_bench.py (written by the benchmark)."""

from celery import Celery

app = Celery("tenfold_celery_bench", broker={url!r}, backend={url!r})
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_models = {{}}


def _load(name):
    # Load once per worker process, on its first task (same as a tenfold worker's load).
    if name not in _models:
        if name == "classify":
            from tenfold.examples.classify import Classify as cls
        else:
            from tenfold.examples.embed import Embed as cls
        m = cls()
        m.load()
        _models[name] = m
    return _models[name]


@app.task(name="classify")
def classify(x):
    from tenfold.examples.classify import Flower

    return _load("classify").predict([Flower(**x)])[0]


@app.task(name="embed")
def embed(x):
    return [float(v) for v in _load("embed").predict([x])[0]]
'''


def flowers(n: int, seed: int) -> list[dict[str, float]]:
    """Iris-like inputs with some variation (so no two jobs need be identical)."""
    rng = random.Random(seed)
    base = [
        (5.1, 3.5, 1.4, 0.2),
        (6.2, 2.9, 4.3, 1.3),
        (6.7, 3.0, 5.2, 2.3),
    ]
    out = []
    for _ in range(n):
        b = rng.choice(base)
        v = [round(max(0.1, x + rng.uniform(-0.3, 0.3)), 2) for x in b]
        out.append(dict(zip(FIELDS, v, strict=True)))
    return out


def inputs(model: str, n: int, seed: int) -> list[Any]:
    if model == "classify":
        return flowers(n, seed)
    from tenfold.examples.sentences import sentences

    return sentences(n, seed=seed)


def check(model: str, result: Any) -> None:
    ok = "label" in result if model == "classify" else len(result) == 384
    if not ok:
        raise RuntimeError(f"unexpected {model} result: {str(result)[:200]}")


def summarize(latencies_s: list[float], wall_s: float, n: int) -> dict[str, float]:
    lat = sorted(latencies_s)
    return {
        "jobs": n,
        "wall_s": wall_s,
        "jobs_per_s": n / wall_s,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
    }


# ---------------------------------------------------------------- client processes


def client_tenfold(base_url: str, model: str, jobs: int, warmup: int) -> dict[str, float]:
    import asyncio

    import aiohttp

    async def run_phase(http: aiohttp.ClientSession, items: list[Any]) -> Any:
        todo = iter(items)
        latencies: list[float] = []

        async def one(x: Any) -> None:
            t0 = time.perf_counter()
            # Prefer: wait=5 (RFC 7240): the submit answers 200 with the finished job when
            # it completes within 5 s, else 202 and the client long-polls as before.
            async with http.post(
                f"/v1/models/{model}/jobs", json={"input": x}, headers={"Prefer": "wait=5"}
            ) as r:
                if r.status not in (200, 202):
                    raise RuntimeError(f"submit: {r.status} {await r.text()}")
                job = await r.json()
                job_id = job["id"]
            while job["status"] != "succeeded":
                if job["status"] in ("failed", "dead", "cancelled"):
                    raise RuntimeError(job)
                async with http.get(f"/v1/jobs/{job_id}", params={"wait_s": "5"}) as r:
                    job = await r.json()
            check(model, job["result"])
            latencies.append(time.perf_counter() - t0)

        async def loop() -> None:
            for x in todo:
                await one(x)

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(IN_FLIGHT)))
        return latencies, time.perf_counter() - t0

    async def main() -> dict[str, float]:
        conn = aiohttp.TCPConnector(limit=IN_FLIGHT * 2)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(base_url, connector=conn, timeout=timeout) as http:
            await run_phase(http, inputs(model, warmup, seed=1))
            latencies, wall = await run_phase(http, inputs(model, jobs, seed=2))
        return summarize(latencies, wall, jobs)

    return asyncio.run(main())


def client_celery(app_dir: str, model: str, jobs: int, warmup: int) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, app_dir)
    import celery_bench_app  # type: ignore[import-not-found]

    task = getattr(celery_bench_app, model)

    def run_phase(items: list[Any]) -> tuple[list[float], float]:
        todo = iter(items)
        latencies: list[float] = []

        def loop() -> None:
            for x in todo:  # a shared iterator: next() is atomic under the GIL
                t0 = time.perf_counter()
                check(model, task.delay(x).get(timeout=60))
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            for f in [pool.submit(loop) for _ in range(IN_FLIGHT)]:
                f.result()
        return latencies, time.perf_counter() - t0

    run_phase(inputs(model, warmup, seed=1))
    latencies, wall = run_phase(inputs(model, jobs, seed=2))
    return summarize(latencies, wall, jobs)


# ---------------------------------------------------------------- orchestration


def run_client(
    kind: str,
    target: str,
    args: argparse.Namespace,
    env: dict[str, str],
    system: dict[str, list[subprocess.Popen[bytes]]],
) -> Any:
    """Run one client process; add the CPU the system's process trees (API, workers, their
    children) and the client spent per job, warm-up included."""
    import resource

    cpu0 = {k: sum(tree_cpu_s(p.pid) for p in ps) for k, ps in system.items()}
    redis0 = redis_cpu_s()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            kind,
            "--target",
            target,
            "--model",
            args.model,
            "--jobs",
            str(args.jobs),
            "--warmup",
            str(args.warmup),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=args.timeout_s,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} client failed:\n{out.stderr[-3000:]}")
    cpu1 = {k: sum(tree_cpu_s(p.pid) for p in ps) for k, ps in system.items()}
    redis1 = redis_cpu_s()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    n = args.jobs + args.warmup
    result["cpu_ms_per_job"] = {k: 1000 * (cpu1[k] - cpu0[k]) / n for k in system}
    result["system_cpu_ms_per_job"] = sum(result["cpu_ms_per_job"].values())
    client_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    result["client_cpu_ms_per_job"] = 1000 * client_cpu / n
    # The Redis server both systems share runs on the same two cores.
    result["redis_cpu_ms_per_job"] = 1000 * (redis1 - redis0) / n
    return result


def redis_cpu_s() -> float:
    """CPU seconds the Redis server has used (its INFO; main thread and children)."""
    import redis

    r = redis.Redis.from_url(REDIS)
    info = r.info("cpu")
    r.close()
    return sum(
        float(info[k])
        for k in (
            "used_cpu_sys",
            "used_cpu_user",
            "used_cpu_sys_children",
            "used_cpu_user_children",
        )
    )


def flush(db: int) -> None:
    import redis

    r = redis.Redis.from_url(f"{REDIS}/{db}")
    r.flushdb()
    r.close()


def bench_tenfold(args: argparse.Namespace, tmp: str, env: dict[str, str]) -> Any:
    queue = f"{REDIS}/{args.tenfold_db}"
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    log = open(Path(tmp) / "tenfold.log", "wb")  # noqa: SIM115
    try:
        tf = [sys.executable, "-m", "tenfold"]
        procs.append(
            subprocess.Popen(
                [
                    *tf,
                    "serve",
                    "--example",
                    args.model,
                    "--port",
                    str(port),
                    "--queue",
                    queue,
                    "--no-local-workers",
                    "--no-cache",
                    "--log-level",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
            )
        )
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*tf, "worker", args.model, "--queue", queue, "--log-level", "WARNING"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=tmp,
                )
            )
        wait_http(f"http://127.0.0.1:{port}/readyz", procs[0], timeout_s=120)
        system = {"api": procs[:1], "workers": procs[1:]}
        return run_client("tenfold", f"http://127.0.0.1:{port}", args, env, system)
    except Exception:
        log.flush()
        print((Path(tmp) / "tenfold.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        for p in procs:
            stop_tree(p)
        log.close()


def bench_celery(args: argparse.Namespace, tmp: str, env: dict[str, str]) -> Any:
    app_dir = Path(tmp) / "celery_app"
    app_dir.mkdir()
    (app_dir / "celery_bench_app.py").write_text(CELERY_APP.format(url=f"{REDIS}/{args.celery_db}"))
    env = {**env, "PYTHONPATH": f"{app_dir}{os.pathsep}{env['PYTHONPATH']}"}
    celery = str(Path(sys.executable).with_name("celery"))
    log = open(Path(tmp) / "celery.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            celery,
            "-A",
            "celery_bench_app",
            "worker",
            "-c",
            "2",
            "-P",
            "prefork",
            "--loglevel=warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=app_dir,
    )
    try:
        return run_client("celery", str(app_dir), args, env, {"workers": [proc]})
    except Exception:
        log.flush()
        print((Path(tmp) / "celery.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop_tree(proc)
        log.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv``; ``None``: ``sys.argv``), with the per-model defaults
    filled in. queue_bench.py calls it with ``["--model", name]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=("classify", "embed"), default="classify")
    parser.add_argument("--jobs", type=int, default=None, help="[classify 3000, embed 1000]")
    parser.add_argument("--warmup", type=int, default=None, help="[classify 200, embed 64]")
    parser.add_argument("--tenfold-db", type=int, default=5)
    parser.add_argument("--celery-db", type=int, default=6)
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument("--client", choices=("tenfold", "celery"), help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs is None:
        args.jobs = 3000 if args.model == "classify" else 1000
    if args.warmup is None:
        args.warmup = 200 if args.model == "classify" else 64
    return args


def main() -> None:
    args = parse_args()
    if args.client == "tenfold":
        print(json.dumps(client_tenfold(args.target, args.model, args.jobs, args.warmup)))
        return
    if args.client == "celery":
        print(json.dumps(client_celery(args.target, args.model, args.jobs, args.warmup)))
        return

    compare(args)


def compare(args: argparse.Namespace) -> float:
    """Run both systems on ``args.model`` and print the comparison; returns tenfold/celery."""
    ensure("aiohttp", "psutil")
    try:
        import celery  # noqa: F401
    except ImportError:
        print("installing benchmark-only package: celery[redis]", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "celery[redis]"], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    # One intra-op thread per worker process on both sides: 2 workers on 2 cores.
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    results: dict[str, Any] = {}
    dbs = (args.tenfold_db, args.celery_db)
    with tempfile.TemporaryDirectory() as tmp:
        for db in dbs:
            flush(db)
        try:
            print(f"tenfold: {args.jobs} jobs (+{args.warmup} warm-up), 2 workers ...", flush=True)
            results["tenfold"] = bench_tenfold(args, tmp, env)
            print(f"celery:  {args.jobs} jobs (+{args.warmup} warm-up), 2 workers ...", flush=True)
            results["celery"] = bench_celery(args, tmp, env)
        finally:
            for db in dbs:
                flush(db)
    print()
    print(
        f"{args.model}, end-to-end async, 2 workers, Redis, {IN_FLIGHT} in flight, {args.jobs} jobs"
    )
    print(f"{'system':8s} {'jobs/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'CPU ms/job':>22s}")
    for name, r in results.items():
        cpu = f"{r['system_cpu_ms_per_job']:.2f} (+{r['client_cpu_ms_per_job']:.2f} client)"
        print(f"{name:8s} {r['jobs_per_s']:8.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {cpu:>22s}")
    for name, r in results.items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_job"].items())
        print(
            f"{name} CPU ms/job by process: {parts}, client {r['client_cpu_ms_per_job']:.2f}, "
            f"redis-server {r['redis_cpu_ms_per_job']:.2f}"
        )
    ratio = results["tenfold"]["jobs_per_s"] / results["celery"]["jobs_per_s"]
    if args.model == "classify":
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"tenfold / celery jobs/s: {ratio:.2f}x (target >= {TARGET:.0f}x: {verdict})")
    else:
        print(f"tenfold / celery jobs/s: {ratio:.2f}x (reported; the target is on classify)")

    return ratio


if __name__ == "__main__":
    main()
