"""Prometheus metrics of the serving path (one registry per app, no globals).

Names follow Prometheus conventions: ``tenfold_`` prefix, base units,
counters end in ``_total``, no unbounded labels. Average batch size is
``tenfold_inferences_total / tenfold_batches_total`` (Triton's way), with the
``tenfold_batch_size`` histogram beside it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "tenfold_requests_total",
            "Predict requests by model and HTTP status code",
            ["model", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "tenfold_request_duration_seconds",
            "Predict request latency",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inferences = Counter(
            "tenfold_inferences_total", "Items run through the model", ["model"], registry=registry
        )
        self.batches = Counter(
            "tenfold_batches_total", "Batches sent to workers", ["model"], registry=registry
        )
        self.batch_size = Histogram(
            "tenfold_batch_size",
            "Items per batch",
            ["model"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_duration = Histogram(
            "tenfold_batch_duration_seconds",
            "Time in predict per (sub-)batch",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batcher_wait = Histogram(
            "tenfold_batcher_wait_seconds",
            "Time items waited in the batcher before running",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batcher_depth = Gauge(
            "tenfold_batcher_queue_items",
            "Items waiting in the batcher",
            ["model"],
            registry=registry,
        )
        self.busy = Counter(
            "tenfold_worker_busy_seconds_total",
            "Seconds workers spent in predict",
            ["model"],
            registry=registry,
        )
        self.shed = Counter(
            "tenfold_shed_total",
            "Requests refused or dropped before computing",
            ["model", "reason"],
            registry=registry,
        )
        self.restarts = Counter(
            "tenfold_worker_restarts_total",
            "Worker processes restarted after dying",
            ["model"],
            registry=registry,
        )
        self.slope = Gauge(
            "tenfold_batch_latency_slope_seconds",
            "Fitted batch latency per item (a in a*n+b)",
            ["model"],
            registry=registry,
        )
        self.intercept = Gauge(
            "tenfold_batch_latency_intercept_seconds",
            "Fitted fixed batch latency (b in a*n+b)",
            ["model"],
            registry=registry,
        )
        self.busy_ratio = Gauge(
            "tenfold_worker_busy_ratio",
            "Share of worker wall time spent in predict (idle accelerators burn money)",
            ["model"],
            registry=registry,
        )
        self.cost_per_1k = Gauge(
            "tenfold_cost_per_1k_requests_usd",
            "Worker cost per 1,000 requests answered, at the configured hourly price",
            ["model"],
            registry=registry,
        )
        self.ready = Gauge(
            "tenfold_model_ready",
            "1 when every worker of the model has loaded it",
            ["model", "version"],
            registry=registry,
        )
