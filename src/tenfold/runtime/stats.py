"""Live serving figures for one model: what ``/v1/stats`` shows.

Counters and recent-window samples (ring buffers), updated by the scheduler
and the HTTP layer, read as a plain dict by :meth:`ModelStats.snapshot`.
Prometheus counters live in :mod:`tenfold.server.metrics`; these are the
human-readable, windowed view (percentiles, histograms, the fitted curve).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import numpy as np

from tenfold.batching.latency import LatencyModel


def _percentiles_ms(samples: deque[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(np.fromiter(samples, float), [50, 95, 99]) * 1000.0
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}


class ModelStats:
    def __init__(self, *, window: int = 4096, throughput_window_s: float = 60.0) -> None:
        self.requests_by_status: Counter[int] = Counter()
        self.items_total = 0
        self.batches_total = 0
        self.batch_sizes: Counter[int] = Counter()
        self.sub_batches_total = 0
        self.busy_s = 0.0
        self.shed: Counter[str] = Counter()
        self._latency_s: deque[float] = deque(maxlen=window)
        self._wait_s: deque[float] = deque(maxlen=window)
        self._done: deque[tuple[float, int]] = deque()
        self._throughput_window_s = throughput_window_s

    def record_request(self, status: int, latency_s: float) -> None:
        self.requests_by_status[status] += 1
        self._latency_s.append(latency_s)

    def record_batch(
        self, now: float, timings: list[tuple[int, float]], waits_s: list[float]
    ) -> None:
        n = sum(k for k, _ in timings)
        self.batches_total += 1
        self.sub_batches_total += len(timings)
        self.items_total += n
        self.batch_sizes[n] += 1
        self.busy_s += sum(s for _, s in timings)
        self._wait_s.extend(waits_s)
        self._done.append((now, n))
        self._prune(now)  # bounded even when nobody reads the stats

    def _prune(self, now: float) -> None:
        horizon = now - self._throughput_window_s
        while self._done and self._done[0][0] < horizon:
            self._done.popleft()

    def throughput(self, now: float) -> float:
        self._prune(now)
        if not self._done:
            return 0.0
        span = max(now - self._done[0][0], 1.0)
        return sum(n for _, n in self._done) / min(span, self._throughput_window_s)

    def snapshot(
        self, now: float, *, queue_depth: int, latency: LatencyModel, uptime_s: float, workers: int
    ) -> dict[str, Any]:
        fit = latency.fit
        return {
            "requests": {
                "total": sum(self.requests_by_status.values()),
                "by_status": {str(k): v for k, v in sorted(self.requests_by_status.items())},
            },
            "items_total": self.items_total,
            "throughput_items_per_s": round(self.throughput(now), 3),
            "latency_ms": _percentiles_ms(self._latency_s),
            "batches": {
                "total": self.batches_total,
                "sub_batches_total": self.sub_batches_total,
                "mean_size": round(self.items_total / self.batches_total, 3)
                if self.batches_total
                else None,
                "histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            },
            "queue": {"depth_items": queue_depth, "wait_ms": _percentiles_ms(self._wait_s)},
            "shed": dict(self.shed),
            "busy_fraction": round(self.busy_s / (uptime_s * workers), 4)
            if uptime_s > 0 and workers
            else 0.0,
            "latency_model": {
                "fitted": fit is not None,
                "slope_ms_per_item": round(fit.slope_s * 1000, 4) if fit else None,
                "intercept_ms": round(fit.intercept_s * 1000, 4) if fit else None,
                "samples": fit.samples if fit else 0,
            },
        }
