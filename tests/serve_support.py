"""``tenfold serve`` in its own process for end-to-end tests: start, wait for /readyz,
yield the URL, stop."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from redis_support import free_port

SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)  # the toy models (toymodels:Upper)


@contextlib.contextmanager
def served(args: list[str], log: Path, *, ready_timeout_s: float = 120) -> Iterator[str]:
    """``python -m tenfold serve --port P ARGS`` with this checkout's src/ (and tests/, for
    the toy models) first on the path, output in ``log`` and the working directory
    ``log.parent`` (the embedded queue's data lands there)."""
    with serving_process(args, log, ready_timeout_s=ready_timeout_s) as (url, _):
        yield url


@contextlib.contextmanager
def serving_process(
    args: list[str],
    log: Path,
    *,
    ready_timeout_s: float = 120,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As :func:`served`, with extra environment variables, yielding the process too."""
    port = free_port()
    path = os.pathsep.join([SRC, TESTS, os.environ.get("PYTHONPATH", "")])
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    argv = [sys.executable, "-m", "tenfold", "serve", "--port", str(port), *args]
    with log.open("w") as fh:
        proc = subprocess.Popen(
            argv, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=log.parent
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server not ready:\n" + log.read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
