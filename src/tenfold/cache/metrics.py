"""Cache metrics: Prometheus families and the ``/v1/stats`` snapshot, from the same counters.

:class:`CacheMetrics` is a custom collector: at scrape time it reads each layer's
:class:`~tenfold.cache.stats.LayerStats` and, where the backend keeps them
in-process (``memory://``), its entries, bytes and evictions. Nothing is
double-counted and the hot path only bumps plain integers.

Families (all labelled by ``layer``)::

    tenfold_cache_requests_total{layer,result}   result: hit|miss|coalesced|bypass
    tenfold_cache_entries{layer}                  memory backend only
    tenfold_cache_bytes{layer}                    memory backend only
    tenfold_cache_evictions_total{layer}          memory backend only
    tenfold_cache_errors_total{layer}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from tenfold.cache.resilient import ResilientBackend
from tenfold.cache.stats import LayerStats, Outcome

__all__ = ["CacheMetrics", "SizedBackend"]


@runtime_checkable
class SizedBackend(Protocol):
    """What a backend that knows its own size exposes (``MemoryBackend`` does)."""

    @property
    def entries(self) -> int: ...

    @property
    def bytes_used(self) -> int: ...

    evictions: int


def _sized(backend: object | None) -> SizedBackend | None:
    if isinstance(backend, ResilientBackend):
        backend = backend.inner
    return backend if isinstance(backend, SizedBackend) else None


class CacheMetrics(Collector):
    """``metrics = CacheMetrics(registry); metrics.track(stats, backend)``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._layers: dict[str, tuple[LayerStats, SizedBackend | None]] = {}
        if registry is not None:
            registry.register(self)

    def track(self, stats: LayerStats, backend: object | None = None) -> None:
        """Report ``stats`` (and the backend's size, when it knows it) under ``stats.layer``."""
        self._layers[stats.layer] = (stats, _sized(backend))

    def _families(
        self,
    ) -> tuple[
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
    ]:
        return (
            CounterMetricFamily(
                "tenfold_cache_requests_total",
                "Cache lookups by layer and how they were served (per item).",
                labels=["layer", "result"],
            ),
            GaugeMetricFamily(
                "tenfold_cache_entries", "Entries held by the layer's store.", labels=["layer"]
            ),
            GaugeMetricFamily(
                "tenfold_cache_bytes",
                "Bytes held by the layer's store (keys, values, overhead).",
                labels=["layer"],
            ),
            CounterMetricFamily(
                "tenfold_cache_evictions_total",
                "Entries evicted to stay within the layer's bounds (not TTL expiry).",
                labels=["layer"],
            ),
            CounterMetricFamily(
                "tenfold_cache_errors_total",
                "Cache backend failures served as misses/no-ops.",
                labels=["layer"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        requests, entries, size, evictions, errors = self._families()
        for layer, (stats, sized) in self._layers.items():
            for outcome, value in (
                (Outcome.HIT, stats.hits),
                (Outcome.MISS, stats.misses),
                (Outcome.COALESCED, stats.coalesced),
                (Outcome.BYPASS, stats.bypasses),
            ):
                requests.add_metric([layer, outcome.value], value)
            errors.add_metric([layer], stats.errors)
            if sized is not None:
                entries.add_metric([layer], sized.entries)
                size.add_metric([layer], sized.bytes_used)
                evictions.add_metric([layer], sized.evictions)
        yield from (requests, entries, size, evictions, errors)

    def snapshot(
        self,
        *,
        s_per_item: Mapping[str, float] | None = None,
        usd_per_gpu_hour: float = 0.0,
    ) -> dict[str, dict[str, Any]]:
        """Per-layer plain dict for ``/v1/stats``.

        ``s_per_item[layer]``: the caller's measured compute seconds per item for that
        layer (e.g. the model's batch time / batch size); without it the layer's own
        timing of its misses is used. ``model_seconds_saved`` = (hits + coalesced) x
        that; ``usd_saved`` prices it at ``usd_per_gpu_hour``.
        """
        out: dict[str, dict[str, Any]] = {}
        for layer, (stats, sized) in self._layers.items():
            given = (s_per_item or {}).get(layer)
            snap = stats.snapshot(s_per_item=given, usd_per_gpu_hour=usd_per_gpu_hour)
            if sized is not None:
                snap["entries"] = sized.entries
                snap["bytes"] = sized.bytes_used
                snap["evictions"] = sized.evictions
            out[layer] = snap
        return out
