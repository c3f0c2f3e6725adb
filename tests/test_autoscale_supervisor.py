from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tenfold.autoscale.config import AutoscaleConfig
from tenfold.autoscale.metrics import AutoscaleMetrics
from tenfold.autoscale.observation import Comparison, Metric
from tenfold.autoscale.rules import ScaleRule, ScalingConfig
from tenfold.autoscale.scaler import LocalScaler
from tenfold.autoscale.sinks import MemoryAlertStore
from tenfold.autoscale.supervisor import WorkerState, WorkerSupervisor
from tenfold.clock import FakeClock

# A tiny worker: logs its start; on SIGTERM it "finishes its batch" (0.2 s) and logs that
# it drained, unless told to ignore SIGTERM (a worker stuck mid-batch).
CHILD = """
import os, signal, sys, time
log, mode = sys.argv[1], sys.argv[2]
def write(what):
    with open(log, "a") as f:
        f.write(f"{what} {os.getpid()}\\n")
def on_term(signum, frame):
    if mode == "ignore":
        return
    time.sleep(0.2)
    write("drained")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
write("started")
while True:
    time.sleep(0.05)
"""


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def events(log: Path, kind: str) -> set[int]:
    if not log.exists():
        return set()
    return {int(p) for k, p in (line.split() for line in log.read_text().splitlines()) if k == kind}


@pytest.fixture
def make_supervisor(tmp_path: Path) -> Iterator[Callable[..., WorkerSupervisor]]:
    made: list[WorkerSupervisor] = []

    def make(mode: str = "graceful", grace_s: float = 30.0) -> WorkerSupervisor:
        sup = WorkerSupervisor(
            [sys.executable, "-c", CHILD, str(tmp_path / "log"), mode],
            grace_s=grace_s,
            clock=FakeClock(),
        )
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.shutdown(timeout_s=5)


@pytest.mark.slow
def test_scale_out_drain_and_crash_replacement(
    tmp_path: Path, make_supervisor: Callable[..., WorkerSupervisor]
) -> None:
    log = tmp_path / "log"
    sup = make_supervisor()
    sup.reconcile(3)
    assert sup.running == 3 and sup.counts.started == 3
    wait_until(lambda: len(events(log, "started")) == 3)

    first = sup.pids()
    sup.reconcile(1)  # drain two: SIGTERM, never SIGKILL
    drained_pids = set(sup.pids(WorkerState.DRAINING))
    assert sup.running == 1 and len(drained_pids) == 2
    assert set(sup.pids(WorkerState.RUNNING)) == {first[0]}  # the oldest stays
    wait_until(lambda: (sup.reconcile(1), sup.draining == 0)[1])
    assert sup.counts.drained == 2 and sup.counts.killed == 0
    assert events(log, "drained") == drained_pids  # each finished its "batch" first

    (survivor,) = sup.pids()
    os.kill(survivor, signal.SIGKILL)  # a crash
    wait_until(lambda: (sup.reconcile(1), sup.counts.crashed == 1)[1])
    assert sup.running == 1 and sup.pids() != [survivor] and sup.counts.started == 4


@pytest.mark.slow
def test_stuck_worker_is_killed_only_after_the_grace_period(
    tmp_path: Path, make_supervisor: Callable[..., WorkerSupervisor]
) -> None:
    sup = make_supervisor(mode="ignore", grace_s=30.0)
    clock = sup.clock
    assert isinstance(clock, FakeClock)
    sup.reconcile(1)
    wait_until(lambda: len(events(tmp_path / "log", "started")) == 1)  # handler installed
    sup.reconcile(0)
    assert sup.draining == 1
    clock.advance(29.0)
    time.sleep(0.3)
    sup.reconcile(0)
    assert sup.draining == 1 and sup.counts.killed == 0  # ignoring SIGTERM, still in grace
    clock.advance(1.0)
    sup.reconcile(0)
    assert sup.draining == 0 and sup.counts.killed == 1


@dataclass(frozen=True)
class Stats:
    queued: int
    oldest_queued_age_s: float = 0.0
    avg_wait_s: float | None = None


@pytest.mark.slow
def test_local_scaler_follows_the_policy(make_supervisor: Callable[..., WorkerSupervisor]) -> None:
    sup = make_supervisor()
    clock = sup.clock
    assert isinstance(clock, FakeClock)
    config = AutoscaleConfig(
        scaling=ScalingConfig(
            rules=(
                ScaleRule("up", Metric.DEPTH, Comparison.GT, 10, sustained_for_s=2, step=1),
                ScaleRule("down", Metric.DEPTH, Comparison.EQ, 0, sustained_for_s=5, step=-1),
            ),
            min_workers=1,
            max_workers=3,
        ),
        tick_s=1,
    )
    registry = CollectorRegistry()
    store = MemoryAlertStore()
    scaler = LocalScaler(
        config, sup, sinks=[store], metrics=AutoscaleMetrics(registry, config.alerts), clock=clock
    )
    seen = []
    for depth in [50] * 8 + [0] * 14:
        scaler.tick(Stats(queued=depth, oldest_queued_age_s=150.0 if depth else 0.0))
        seen.append(sup.running)
        clock.advance(1)
    assert seen[:8] == [1, 1, 2, 2, 3, 3, 3, 3]
    assert max(seen) == 3 and seen[-1] == 1
    wait_until(lambda: (sup.reconcile(1), sup.draining == 0)[1])
    assert sup.counts.drained == 2 and sup.counts.killed == 0
    assert (
        registry.get_sample_value("tenfold_autoscaler_scale_events_total", {"direction": "up"}) == 2
    )
    assert registry.get_sample_value("tenfold_autoscaler_desired_workers") == 1
    assert [a["alert"] for a in store.snapshot()["recent"]] == ["queue_stalled"]


@pytest.mark.slow
def test_shutdown_waits_one_grace_period_for_all_stuck_workers(
    tmp_path: Path, make_supervisor: Callable[..., WorkerSupervisor]
) -> None:
    sup = make_supervisor(mode="ignore", grace_s=1.0)
    sup.reconcile(4)
    wait_until(lambda: len(events(tmp_path / "log", "started")) == 4)  # handlers installed
    pids = sup.pids()
    started = time.monotonic()
    sup.shutdown()
    took = time.monotonic() - started
    assert 1.0 <= took < 2.0  # one grace period in all, not one per worker
    assert sup.counts.killed == 4 and sup.counts.drained == 0 and sup.running == 0
    for pid in pids:  # killed and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
