"""Per-layer cache counters: the one source for Prometheus metrics and ``/v1/stats``.

Plain counters, bumped by the layer that owns them (no I/O, no locks: every
update happens on the event loop thread between awaits).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["LayerStats", "Outcome", "usd_saved"]


class Outcome(StrEnum):
    """How one lookup was served; the ``result`` label of ``tenfold_cache_requests_total``."""

    HIT = "hit"
    MISS = "miss"
    # Answered by another request's in-flight computation (single-flight): no model call.
    COALESCED = "coalesced"
    # The caller asked to skip the lookup (Cache-Control: no-cache) or the input had no key.
    BYPASS = "bypass"


@dataclass(slots=True)
class LayerStats:
    """Counters of one cache layer (``result``, ``embedding``, ``features``, ...)."""

    layer: str
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    bypasses: int = 0
    errors: int = 0
    # Time spent computing misses, as seen by the layer, and how many items it covered:
    # their ratio is the measured per-item compute time when the caller gives none.
    compute_s: float = 0.0
    computed_items: int = 0

    def count(self, outcome: Outcome, n: int = 1) -> None:
        if outcome is Outcome.HIT:
            self.hits += n
        elif outcome is Outcome.MISS:
            self.misses += n
        elif outcome is Outcome.COALESCED:
            self.coalesced += n
        else:
            self.bypasses += n

    def add_compute(self, seconds: float, items: int) -> None:
        self.compute_s += seconds
        self.computed_items += items

    @property
    def saved_calls(self) -> int:
        """Items answered without a model call for them."""
        return self.hits + self.coalesced

    @property
    def hit_ratio(self) -> float:
        """Saved / (saved + misses); bypasses are not lookups. 0.0 before any lookup."""
        lookups = self.saved_calls + self.misses
        return self.saved_calls / lookups if lookups else 0.0

    @property
    def measured_s_per_item(self) -> float | None:
        return self.compute_s / self.computed_items if self.computed_items else None

    def snapshot(
        self, *, s_per_item: float | None = None, usd_per_gpu_hour: float = 0.0
    ) -> dict[str, Any]:
        """A JSON-ready dict; ``s_per_item`` (measured by the caller) overrides the layer's own."""
        per_item = s_per_item if s_per_item is not None else self.measured_s_per_item
        saved_s = self.saved_calls * per_item if per_item is not None else 0.0
        return {
            "hits": self.hits,
            "misses": self.misses,
            "coalesced": self.coalesced,
            "bypasses": self.bypasses,
            "errors": self.errors,
            "hit_ratio": self.hit_ratio,
            "seconds_per_item": per_item,
            "model_seconds_saved": saved_s,
            "usd_saved": usd_saved(saved_s, usd_per_gpu_hour),
        }


def usd_saved(model_seconds: float, usd_per_gpu_hour: float) -> float:
    """Dollars that ``model_seconds`` of GPU time cost at ``usd_per_gpu_hour``."""
    if usd_per_gpu_hour < 0:
        raise ValueError(f"usd_per_gpu_hour must be >= 0, got {usd_per_gpu_hour}")
    return model_seconds / 3600.0 * usd_per_gpu_hour
