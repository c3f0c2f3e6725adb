from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tenfold.autoscale.alerts import SEED_ALERTS, AlertEngine
from tenfold.autoscale.metrics import AutoscaleMetrics
from tenfold.autoscale.observation import QueueObservation
from tenfold.autoscale.rules import Direction


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_names_and_values() -> None:
    registry = CollectorRegistry()
    m = AutoscaleMetrics(registry, SEED_ALERTS)
    m.observe_queue(QueueObservation(depth=150, oldest_age_s=42.5, avg_wait_s=7.5, workers=2))
    m.set_workers(running=4, draining=1)
    m.record_decision(6, Direction.UP)
    m.record_decision(6, None)
    m.record_decision(5, Direction.DOWN)
    engine = AlertEngine()
    ev = engine.evaluate(engine.initial_state(), QueueObservation(depth=1, oldest_age_s=500), 0.0)
    m.record_alerts(ev, SEED_ALERTS)

    assert sample(registry, "tenfold_queue_depth") == 150
    assert sample(registry, "tenfold_queue_oldest_age_seconds") == 42.5
    assert sample(registry, "tenfold_queue_wait_avg_seconds") == 7.5
    assert sample(registry, "tenfold_workers", state="running") == 4
    assert sample(registry, "tenfold_workers", state="draining") == 1
    assert sample(registry, "tenfold_autoscaler_desired_workers") == 5
    assert sample(registry, "tenfold_autoscaler_scale_events_total", direction="up") == 1
    assert sample(registry, "tenfold_autoscaler_scale_events_total", direction="down") == 1
    assert (
        sample(registry, "tenfold_alerts_firing", alert="queue_stalled", severity="critical") == 1
    )
    assert (
        sample(registry, "tenfold_alerts_firing", alert="queue_wait_high", severity="warning") == 0
    )

    text = generate_latest(registry).decode()
    names = {family.name for family in registry.collect()}
    assert names == {
        "tenfold_queue_depth",
        "tenfold_queue_oldest_age_seconds",
        "tenfold_queue_wait_avg_seconds",
        "tenfold_workers",
        "tenfold_autoscaler_desired_workers",
        "tenfold_autoscaler_scale_events",
        "tenfold_alerts_firing",
    }
    assert 'tenfold_autoscaler_scale_events_total{direction="up"} 1.0' in text


def test_two_registries_do_not_collide() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    AutoscaleMetrics(a).record_decision(3, Direction.UP)
    AutoscaleMetrics(b)
    assert sample(a, "tenfold_autoscaler_scale_events_total", direction="up") == 1
    assert sample(b, "tenfold_autoscaler_scale_events_total", direction="up") == 0
