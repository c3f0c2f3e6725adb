from __future__ import annotations

import asyncio
import dataclasses
import threading
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from tenfold.autoscale.alerts import AlertEvent, AlertRule, Severity
from tenfold.autoscale.config import AutoscaleConfig
from tenfold.autoscale.metrics import AutoscaleMetrics
from tenfold.autoscale.observation import Comparison, Metric
from tenfold.autoscale.rules import ScalingConfig
from tenfold.autoscale.scaler import LocalScaler
from tenfold.autoscale.sinks import MemoryAlertStore
from tenfold.autoscale.supervisor import WorkerSupervisor
from tenfold.clock import FakeClock


@dataclass(frozen=True)
class Stats:
    queued: int
    oldest_queued_age_s: float = 0.0
    avg_wait_s: float | None = None


STALLED = AlertRule(
    "queue_stalled",
    Severity.CRITICAL,
    Metric.OLDEST_AGE_S,
    Comparison.GT,
    120,
    for_s=30,
    summary="nobody runs the jobs",
)


def test_alerts_fire_when_workers_cannot_be_started() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    store = MemoryAlertStore()
    config = AutoscaleConfig(alerts=(STALLED,))
    scaler = LocalScaler(
        config,
        WorkerSupervisor(["/nonexistent/tenfold-worker"], clock=clock),
        sinks=[store],
        metrics=AutoscaleMetrics(registry, config.alerts),
        clock=clock,
    )

    def firing() -> float | None:
        labels = {"alert": "queue_stalled", "severity": "critical"}
        return registry.get_sample_value("tenfold_alerts_firing", labels)

    age = 150.0
    for step_s, fires in [(0, False), (20, False), (10, True), (10, True)]:  # for_s=30
        clock.advance(step_s)
        age += step_s
        # tick still raises (the run loop logs it), but only after the alerts are handled
        with pytest.raises(FileNotFoundError):
            scaler.tick(Stats(queued=5, oldest_queued_age_s=age))
        assert (firing() == 1) is fires
        assert [a["alert"] for a in store.snapshot()["active"]] == ["queue_stalled"] * fires
    assert scaler.supervisor.running == 0
    assert scaler.last_alerts is not None and scaler.last_alerts.firing
    assert registry.get_sample_value("tenfold_queue_oldest_age_seconds") == 190.0


class BlockingSink:
    """A sink whose emit blocks (like a webhook that never answers) until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()

    def emit(self, event: AlertEvent, wall_time_s: float) -> None:
        self.entered.set()
        self.release.wait(timeout=1.0)  # bounded, so the old code only freezes the loop 1 s
        self.done.set()


async def test_a_blocking_alert_sink_does_not_block_the_event_loop() -> None:
    sink = BlockingSink()
    config = AutoscaleConfig(
        scaling=ScalingConfig(rules=(), min_workers=0, max_workers=1),
        alerts=(dataclasses.replace(STALLED, for_s=0),),
        tick_s=0.05,
    )
    clock = FakeClock()
    # min_workers=0 and no rules: nothing to start, only the alert to dispatch
    supervisor = WorkerSupervisor(["/nonexistent/tenfold-worker"], clock=clock)
    scaler = LocalScaler(config, supervisor, sinks=[sink], clock=clock)

    async def read_stats() -> Stats:
        return Stats(queued=1, oldest_queued_age_s=500.0)

    stop = asyncio.Event()
    task = asyncio.create_task(scaler.run(read_stats, stop))
    try:
        while not sink.entered.is_set():
            await asyncio.sleep(0.005)
        for _ in range(5):  # the loop keeps turning while the sink is still blocked
            await asyncio.sleep(0.005)
        assert not sink.done.is_set()
    finally:
        sink.release.set()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    assert sink.done.is_set()
