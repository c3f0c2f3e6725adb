"""Scaling rules as data, and the seed rules.

A rule reads: *when ``metric comparison threshold`` has held for ``sustained_for_s``
seconds, change the desired worker count by ``step``*; after it fires it cannot fire
again for ``cooldown_s`` seconds and its window starts over. The seed rules::

    depth > 100 for 120 s  -> +2
    depth == 0  for 600 s  -> -1
    min 2 workers, max 50
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from tenfold.autoscale.observation import Comparison, Metric


def require_int(value: object, what: str) -> int:
    """``value`` if it is an ``int`` (a ``bool`` is not), else a ValueError naming ``what``.

    Config values come from TOML, where ``1.5`` or ``"2"`` load fine and would only break
    (or silently misbehave) later, at the first decision.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


def require_real(value: object, what: str) -> float:
    """``value`` if it is a finite ``int`` or ``float`` (not a ``bool``, nan or inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class ScaleRule:
    name: str
    metric: Metric
    comparison: Comparison
    threshold: float
    sustained_for_s: float
    step: int
    cooldown_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a scale rule needs a name (a non-empty string), got {self.name!r}")
        require_int(self.step, f"rule {self.name!r}: step")
        require_real(self.threshold, f"rule {self.name!r}: threshold")
        require_real(self.sustained_for_s, f"rule {self.name!r}: sustained_for_s")
        require_real(self.cooldown_s, f"rule {self.name!r}: cooldown_s")
        if self.step == 0:
            raise ValueError(f"rule {self.name!r}: step must be non-zero (+n up, -n down)")
        if self.sustained_for_s < 0:
            raise ValueError(
                f"rule {self.name!r}: sustained_for_s must be >= 0, got {self.sustained_for_s!r}"
            )
        if self.cooldown_s < 0:
            raise ValueError(
                f"rule {self.name!r}: cooldown_s must be >= 0, got {self.cooldown_s!r}"
            )

    @property
    def direction(self) -> Direction:
        return Direction.UP if self.step > 0 else Direction.DOWN

    @property
    def min_interval_s(self) -> float:
        """Shortest time between two firings: the window restarts, the cooldown runs."""
        return max(self.sustained_for_s, self.cooldown_s)

    def describe(self) -> str:
        return (
            f"{self.metric.value} {self.comparison.value} {self.threshold:g} "
            f"for {self.sustained_for_s:g}s -> {self.step:+d}"
        )


SCALE_UP = ScaleRule(
    name="queue_backlog",
    metric=Metric.DEPTH,
    comparison=Comparison.GT,
    threshold=100,
    sustained_for_s=120,
    step=2,
)
SCALE_DOWN = ScaleRule(
    name="queue_empty",
    metric=Metric.DEPTH,
    comparison=Comparison.EQ,
    threshold=0,
    sustained_for_s=600,
    step=-1,
)


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    """The rules and the clamp. ``min_workers`` stay warm; ``max_workers`` is the budget cap."""

    rules: tuple[ScaleRule, ...] = field(default=(SCALE_UP, SCALE_DOWN))
    min_workers: int = 2
    max_workers: int = 50

    def __post_init__(self) -> None:
        require_int(self.min_workers, "min_workers")
        require_int(self.max_workers, "max_workers")
        if self.min_workers < 0:
            raise ValueError(f"min_workers must be >= 0, got {self.min_workers!r}")
        if self.max_workers < max(1, self.min_workers):
            raise ValueError(
                f"max_workers must be >= min_workers and >= 1, got max_workers = "
                f"{self.max_workers!r} with min_workers = {self.min_workers!r}"
            )
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"scale rule names must be unique, got {names}")

    def clamp(self, workers: int) -> int:
        return max(self.min_workers, min(self.max_workers, workers))
