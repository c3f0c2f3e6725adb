"""Local worker processes: start, drain on scale-in, replace on crash.

``WorkerSupervisor(argv).reconcile(desired)`` is one non-blocking step: it reaps
exited processes, replaces crashed ones, and starts or drains workers until
``desired`` are running. Scale-in never kills mid-batch: the chosen worker gets
SIGTERM (tenfold workers then stop claiming and finish or release their batch) and
is only SIGKILLed if it is still alive ``grace_s`` after the SIGTERM. A draining
worker no longer counts as capacity. Every event is logged and counted.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tenfold.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class WorkerState(StrEnum):
    RUNNING = "running"
    DRAINING = "draining"


@dataclass(slots=True)
class _Worker:
    proc: subprocess.Popen[bytes]
    started_at: float
    state: WorkerState = WorkerState.RUNNING
    term_sent_at: float | None = None


@dataclass(slots=True)
class SupervisorCounts:
    started: int = 0
    crashed: int = 0
    """Running workers that exited on their own (they are replaced)."""
    drained: int = 0
    """Workers that exited after SIGTERM within the grace period."""
    killed: int = 0
    """Workers SIGKILLed because the grace period passed."""


def worker_grace_s(kill_after_s: float) -> float:
    """The worker's own ``--grace-s`` when whoever stops it SIGKILLs ``kill_after_s`` after
    SIGTERM (the supervisor's ``grace_s``, a pod's terminationGracePeriodSeconds): a margin
    inside it, so the worker finishes or releases its batch before the kill."""
    return max(1.0, kill_after_s - min(10.0, kill_after_s / 4))


class WorkerSupervisor:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        grace_s: float = 60.0,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise ValueError("a worker command (argv) is required")
        self.argv = list(argv)
        self.grace_s = grace_s
        self.clock = clock or SystemClock()
        self.env = dict(env) if env is not None else None
        self.counts = SupervisorCounts()
        self._workers: list[_Worker] = []

    @property
    def running(self) -> int:
        return sum(1 for w in self._workers if w.state is WorkerState.RUNNING)

    @property
    def draining(self) -> int:
        return sum(1 for w in self._workers if w.state is WorkerState.DRAINING)

    def pids(self, state: WorkerState | None = None) -> list[int]:
        return [w.proc.pid for w in self._workers if state is None or w.state is state]

    def reconcile(self, desired: int) -> None:
        now = self.clock.now()
        self._reap(now)
        running = [w for w in self._workers if w.state is WorkerState.RUNNING]
        for _ in range(desired - len(running)):
            self._start(now)
        # Drain the newest first: the oldest have been warm longest.
        for worker in sorted(running, key=lambda w: w.started_at)[desired:][::-1]:
            self._drain(worker, now)

    def _start(self, now: float) -> None:
        proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL)
        self._workers.append(_Worker(proc=proc, started_at=now))
        self.counts.started += 1
        log.info("worker %d started", proc.pid)

    def _drain(self, worker: _Worker, now: float) -> None:
        worker.state = WorkerState.DRAINING
        worker.term_sent_at = now
        worker.proc.send_signal(signal.SIGTERM)
        log.info("worker %d draining (SIGTERM, grace %gs)", worker.proc.pid, self.grace_s)

    def _reap(self, now: float) -> None:
        alive: list[_Worker] = []
        for w in self._workers:
            code = w.proc.poll()
            if code is None:
                if (
                    w.state is WorkerState.DRAINING
                    and w.term_sent_at is not None
                    and now - w.term_sent_at >= self.grace_s
                ):
                    log.warning(
                        "worker %d still alive %gs after SIGTERM: SIGKILL", w.proc.pid, self.grace_s
                    )
                    w.proc.kill()
                    w.proc.wait()
                    self.counts.killed += 1
                    continue
                alive.append(w)
            elif w.state is WorkerState.DRAINING:
                self.counts.drained += 1
                log.info("worker %d drained (exit %d)", w.proc.pid, code)
            else:
                self.counts.crashed += 1
                log.warning(
                    "worker %d exited unexpectedly (exit %d): replacing it", w.proc.pid, code
                )
        self._workers = alive

    def shutdown(self, timeout_s: float | None = None) -> None:
        """SIGTERM every worker, wait up to the grace period (blocking), SIGKILL the rest.

        The grace period is one deadline for all workers, counted from the SIGTERMs sent
        here: N workers that ignore SIGTERM cost one grace period, not N.
        """
        timeout = self.grace_s if timeout_s is None else timeout_s
        for w in self._workers:
            if w.state is WorkerState.RUNNING:
                self._drain(w, self.clock.now())
        # Wall time, not self.clock: this really blocks (and a fake clock never moves).
        deadline = time.monotonic() + timeout
        for w in self._workers:
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                self.counts.drained += 1
            except subprocess.TimeoutExpired:
                log.warning("worker %d still alive %gs after SIGTERM: SIGKILL", w.proc.pid, timeout)
                w.proc.kill()
                w.proc.wait()
                self.counts.killed += 1
        self._workers = []
