"""What the autoscaler and the alerts see of a queue at one instant."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Metric(StrEnum):
    """A field of :class:`QueueObservation` a rule can test."""

    DEPTH = "depth"
    OLDEST_AGE_S = "oldest_age_s"
    AVG_WAIT_S = "avg_wait_s"
    WORKERS = "workers"


@dataclass(frozen=True, slots=True)
class QueueObservation:
    """One sample of a work queue.

    ``depth`` counts jobs queued and not yet leased (the backlog, KEDA's ``lagCount``),
    not the jobs in flight. ``oldest_age_s`` is the age of the oldest queued job (0
    when none); unlike a wait histogram it keeps growing when every worker is dead.
    ``avg_wait_s`` is the mean queue wait of the jobs dequeued over the backend's
    window (0 when none were dequeued). ``workers`` is the number of live workers.
    """

    depth: int
    oldest_age_s: float = 0.0
    avg_wait_s: float = 0.0
    workers: int = 0

    def __post_init__(self) -> None:
        if self.depth < 0 or self.workers < 0:
            raise ValueError("depth and workers must be >= 0")
        for name in ("oldest_age_s", "avg_wait_s"):
            value = getattr(self, name)
            if value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def value(self, metric: Metric) -> float:
        return float(getattr(self, metric.value))


class Comparison(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="

    def holds(self, value: float, threshold: float) -> bool:
        if self is Comparison.GT:
            return value > threshold
        if self is Comparison.GE:
            return value >= threshold
        if self is Comparison.LT:
            return value < threshold
        if self is Comparison.LE:
            return value <= threshold
        return value == threshold
