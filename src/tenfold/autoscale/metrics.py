"""Prometheus metrics of the queue, the worker pool, the autoscaler and the alerts.

``AutoscaleMetrics(registry)`` registers everything on the registry it is given
(never the global one implicitly), so an app and its tests each own theirs::

    tenfold_queue_depth                          gauge      jobs queued, not leased
    tenfold_queue_oldest_age_seconds             gauge      age of the oldest queued job
    tenfold_queue_wait_avg_seconds               gauge      mean queue wait of the jobs claimed
                                                            over the queue's stats window

The per-job wait histogram is observed where jobs are dequeued, in the worker process
(``tenfold worker --metrics-port``; see :func:`queue_wait_histogram`)::

    tenfold_queue_wait_seconds                   histogram  queue wait of each claimed job
    tenfold_workers{state}                       gauge      running | draining
    tenfold_autoscaler_desired_workers           gauge
    tenfold_autoscaler_scale_events_total{direction}  counter  up | down
    tenfold_alerts_firing{alert,severity}        gauge      1 firing, 0 not
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tenfold.autoscale.alerts import AlertEvaluation, AlertRule
from tenfold.autoscale.observation import QueueObservation
from tenfold.autoscale.rules import Direction

WAIT_BUCKETS_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
WORKER_STATES = ("running", "draining")


def queue_wait_histogram(registry: CollectorRegistry) -> Histogram:
    """``tenfold_queue_wait_seconds``: each claimed job's wait, from enqueue (or the
    retry's due time) to the lease, observed by the worker that leased it."""
    return Histogram(
        "tenfold_queue_wait_seconds",
        "Time a job waited in the queue, observed when a worker leases it.",
        buckets=WAIT_BUCKETS_S,
        registry=registry,
    )


class AutoscaleMetrics:
    def __init__(self, registry: CollectorRegistry, alert_rules: Iterable[AlertRule] = ()) -> None:
        self.queue_depth = Gauge(
            "tenfold_queue_depth", "Jobs queued and not yet leased.", registry=registry
        )
        self.queue_oldest_age = Gauge(
            "tenfold_queue_oldest_age_seconds",
            "Age of the oldest queued job (0 when the queue is empty).",
            registry=registry,
        )
        self.queue_wait_avg = Gauge(
            "tenfold_queue_wait_avg_seconds",
            "Mean time the jobs claimed over the queue's stats window waited (0 when none).",
            registry=registry,
        )
        self.workers = Gauge(
            "tenfold_workers", "Worker processes by state.", ["state"], registry=registry
        )
        self.desired_workers = Gauge(
            "tenfold_autoscaler_desired_workers",
            "Worker count the autoscaler asks for.",
            registry=registry,
        )
        self.scale_events = Counter(
            "tenfold_autoscaler_scale_events",
            "Changes of the desired worker count.",
            ["direction"],
            registry=registry,
        )
        self.alerts_firing = Gauge(
            "tenfold_alerts_firing",
            "1 while the alert fires, else 0.",
            ["alert", "severity"],
            registry=registry,
        )
        # Pre-create the label sets so every series exists (at 0) from the first scrape.
        for state in WORKER_STATES:
            self.workers.labels(state=state)
        for direction in Direction:
            self.scale_events.labels(direction=direction.value)
        for rule in alert_rules:
            self.alerts_firing.labels(alert=rule.name, severity=rule.severity.value).set(0)

    def observe_queue(self, obs: QueueObservation) -> None:
        self.queue_depth.set(obs.depth)
        self.queue_oldest_age.set(obs.oldest_age_s)
        self.queue_wait_avg.set(obs.avg_wait_s)

    def set_workers(self, *, running: int, draining: int = 0) -> None:
        self.workers.labels(state="running").set(running)
        self.workers.labels(state="draining").set(draining)

    def record_decision(self, desired: int, direction: Direction | None) -> None:
        self.desired_workers.set(desired)
        if direction is not None:
            self.scale_events.labels(direction=direction.value).inc()

    def record_alerts(self, evaluation: AlertEvaluation, rules: Iterable[AlertRule]) -> None:
        firing = {a.rule.name for a in evaluation.firing}
        for rule in rules:
            self.alerts_firing.labels(alert=rule.name, severity=rule.severity.value).set(
                1 if rule.name in firing else 0
            )
