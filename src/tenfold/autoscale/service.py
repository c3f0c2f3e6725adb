"""The simulator's service model: what one worker delivers at the configured batch size.

Either a constant (``--worker-rps R``) or a point of a measured profile, the planner's
``profile.json``::

    {"model": ..., "version": ..., "device": ...,
     "points": [{"batch_size": 32, "latency_p50_ms": ..., "latency_p99_ms": ...,
                 "items_per_s": ...}, ...]}

Only those fields are read. The point used is the one at the configured batch size,
else the largest measured batch size below it (a worker never runs a batch bigger than
configured), else the smallest measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ProfileError(ValueError):
    """The profile file is not usable (the message says which field)."""


@dataclass(frozen=True, slots=True)
class ServiceModel:
    items_per_s: float
    """Throughput of one busy worker."""
    batch_latency_s: float = 0.0
    """Median time to run one batch (reported; queue wait is measured to the start)."""
    batch_size: int | None = None
    source: str = "constant"

    def __post_init__(self) -> None:
        if not self.items_per_s > 0:
            raise ValueError("items_per_s must be > 0")
        if self.batch_latency_s < 0:
            raise ValueError("batch_latency_s must be >= 0")

    @classmethod
    def constant(cls, worker_rps: float) -> ServiceModel:
        return cls(items_per_s=worker_rps, source=f"constant {worker_rps:g} items/s/worker")

    @classmethod
    def from_profile(cls, path: str | Path, batch_size: int) -> ServiceModel:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ProfileError(f"{path}: {exc}") from exc
        return cls.from_profile_dict(doc, batch_size, source=str(path))

    @classmethod
    def from_profile_dict(
        cls, doc: dict[str, Any], batch_size: int, *, source: str = "profile"
    ) -> ServiceModel:
        points = doc.get("points")
        if not isinstance(points, list) or not points:
            raise ProfileError(f"{source}: 'points' must be a non-empty list")
        parsed: list[tuple[int, float, float]] = []
        for i, p in enumerate(points):
            try:
                parsed.append(
                    (int(p["batch_size"]), float(p["items_per_s"]), float(p["latency_p50_ms"]))
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ProfileError(f"{source}: points[{i}] lacks a numeric {exc}") from exc
        parsed.sort()
        below = [p for p in parsed if p[0] <= batch_size]
        bs, items_per_s, p50_ms = below[-1] if below else parsed[0]
        label = f"{doc.get('model', '?')} {doc.get('version', '')} on {doc.get('device', '?')}"
        return cls(
            items_per_s=items_per_s,
            batch_latency_s=p50_ms / 1000.0,
            batch_size=bs,
            source=f"{source}: {label.strip()} at batch {bs}",
        )
