"""Online fit of batch latency: ``latency(n) = a * n + b`` seconds.

Least squares over the most recent ``window`` executed batches (BentoML's
approach, which fits over the last 50). The fit is only trusted once it has
seen ``min_samples`` batches of at least two distinct sizes; until then
:attr:`LatencyModel.fitted` is False and the adaptive batcher behaves like the
fixed one (it never sheds on a guess).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LatencyFit:
    slope_s: float
    intercept_s: float
    samples: int

    def predict(self, n: int) -> float:
        return self.slope_s * n + self.intercept_s


class LatencyModel:
    """Keeps recent (batch size, seconds) observations and a least-squares fit."""

    def __init__(self, window: int = 50, min_samples: int = 5) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        self._obs: deque[tuple[int, float]] = deque(maxlen=window)
        self._min_samples = min_samples
        self._fit: LatencyFit | None = None

    def observe(self, n: int, seconds: float) -> None:
        if n <= 0 or seconds < 0:
            return
        self._obs.append((n, seconds))
        self._fit = self._compute()

    @property
    def fitted(self) -> bool:
        return self._fit is not None

    @property
    def fit(self) -> LatencyFit | None:
        return self._fit

    def predict(self, n: int) -> float:
        """Predicted seconds for a batch of ``n`` items (0.0 while unfitted)."""
        return self._fit.predict(n) if self._fit else 0.0

    def _compute(self) -> LatencyFit | None:
        obs = self._obs
        if len(obs) < self._min_samples or len({n for n, _ in obs}) < 2:
            return None
        k = len(obs)
        mean_n = sum(n for n, _ in obs) / k
        mean_t = sum(t for _, t in obs) / k
        var = sum((n - mean_n) ** 2 for n, _ in obs)
        cov = sum((n - mean_n) * (t - mean_t) for n, t in obs)
        slope = max(cov / var, 0.0)
        intercept = mean_t - slope * mean_n
        if intercept < 0:
            # A negative fixed cost is noise; refit through the origin instead.
            slope = sum(n * t for n, t in obs) / sum(n * n for n, _ in obs)
            intercept = 0.0
        return LatencyFit(slope_s=slope, intercept_s=intercept, samples=k)
