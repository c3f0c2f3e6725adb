"""Shared benchmark plumbing: start a server process, drive it with the load generator
in a separate process, and measure the CPU of the server's process tree."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: ``tenfold serve --example embed`` on the port the harness picks ({port}).
SERVE_EMBED = [
    sys.executable,
    "-m",
    "tenfold",
    "serve",
    "--example",
    "embed",
    "--port",
    "{port}",
    "--log-level",
    "warning",
]


def ensure(*packages: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        print(f"installing benchmark-only packages: {' '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    import urllib.request

    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready in {timeout_s} s")


def tree_cpu_s(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server and every process it started (LitServe's workers outlive a plain
    terminate of their parent, and a stray one spinning skews every later figure)."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        child.kill()


def measure_server(
    name: str,
    argv: list[str],
    ready_path: str,
    predict_path: str,
    args: argparse.Namespace,
    loadgen_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> dict[str, object]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", **(env or {})}
    log = open(HERE / f".{name}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [a.replace("{port}", str(port)) for a in argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", proc)
        time.sleep(1.0)
        cpu0, t0 = tree_cpu_s(proc.pid), time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                str(HERE / "_loadgen.py"),
                f"http://127.0.0.1:{port}{predict_path}",
                "--concurrency",
                str(args.concurrency),
                "--seconds",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
                *loadgen_args,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        cpu1, t1 = tree_cpu_s(proc.pid), time.perf_counter()
        if out.stderr.strip():  # the load generator's warnings
            print(out.stderr.strip(), file=sys.stderr, flush=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["server_cpu_cores"] = (cpu1 - cpu0) / (t1 - t0)
        result["client_cpu_cores"] = result["client_cpu_s"] / result["wall_s"]
        if result.get("wrapped"):
            print(
                f"WARNING {name}: the load generator ran out of distinct sentences; repeats "
                "may have been cache hits (raise --sentences)",
                file=sys.stderr,
                flush=True,
            )
        return result
    finally:
        stop_tree(proc)
        log.close()
