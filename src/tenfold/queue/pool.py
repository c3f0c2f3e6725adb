"""Local worker processes for ``tenfold serve`` (one command on one machine).

::

    pool = LocalWorkerPool("classify", "sqlite:///data/queue.db", processes=2)
    pool.start()
    ...
    pool.restart_exited()   # call periodically: replaces crashed workers
    pool.stop(grace_s=30)   # SIGTERM, wait, then SIGKILL stragglers

Each worker is ``python -m tenfold.queue.cli worker ...`` in its own process,
so a crash (or a kill -9) loses nothing: its leases expire and the jobs run
again elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any


class LocalWorkerPool:
    def __init__(
        self,
        target: str,
        queue_url: str,
        *,
        processes: int = 1,
        max_batch_size: int | None = None,
        batch_timeout_ms: float | None = None,
        lease_ms: float | None = None,
        grace_s: float = 30.0,
        model_options: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.target = target
        self.queue_url = queue_url
        self.size = processes
        self.grace_s = grace_s
        args = [sys.executable, "-m", "tenfold.queue.cli", "worker", target, "--queue", queue_url]
        if max_batch_size is not None:
            args += ["--max-batch-size", str(max_batch_size)]
        if batch_timeout_ms is not None:
            args += ["--batch-timeout-ms", str(batch_timeout_ms)]
        if lease_ms is not None:
            args += ["--lease-ms", str(lease_ms)]
        if model_options:
            args += ["--options", json.dumps(dict(model_options))]
        args += ["--grace-s", str(grace_s), *extra_args]
        self.args = args
        self.env = dict(env) if env is not None else dict(os.environ)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.restarts = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.args, env=self.env)

    def start(self) -> None:
        while len(self.processes) < self.size:
            self.processes.append(self._spawn())

    def restart_exited(self) -> int:
        """Replace workers that exited (crash, OOM kill); returns how many were replaced."""
        replaced = 0
        for i, proc in enumerate(self.processes):
            if proc.poll() is not None:
                self.processes[i] = self._spawn()
                replaced += 1
        self.restarts += replaced
        return replaced

    def stop(self, grace_s: float | None = None) -> list[int]:
        """SIGTERM every worker, wait up to the grace period (+5 s), SIGKILL the rest.
        Returns the exit codes."""
        grace = self.grace_s if grace_s is None else grace_s
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 5.0
        codes: list[int] = []
        for proc in self.processes:
            try:
                codes.append(proc.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        self.processes = []
        return codes
