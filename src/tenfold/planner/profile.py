"""The profile format: a model's measured batch curve on one device.

``profile.json`` is read by the planner and by the autoscale simulator; keep it stable
(documented in ``docs/planner.md``)::

    {
      "model": "embed",
      "version": "all-MiniLM-L6-v2",
      "device": "cpu: Intel(R) Xeon(R) ...",
      "points": [
        {"batch_size": 1, "latency_p50_ms": 9.1, "latency_p99_ms": 12.0,
         "items_per_s": 108.0, "busy_fraction": 0.97},
        ...
      ]
    }

Required: ``model``, ``version``, ``device``, ``points`` (at least one; each with
``batch_size``, ``latency_p50_ms``, ``latency_p99_ms``, ``items_per_s``). Optional:
``busy_fraction`` and ``memory_bytes`` per point, ``weights_bytes`` and
``utilization_source`` (``"nvml"`` or ``"busy_time"``) at the top. Readers ignore keys
they do not know, so later fields do not break older readers.

    profile = Profile.from_json(text)        # or load_profile(path)
    text = profile.to_json()                 # Profile.from_json(text) == profile
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ProfileError(ValueError):
    """A profile file that is missing, not JSON, or does not match the schema."""


@dataclass(frozen=True, slots=True)
class ProfilePoint:
    """One batch size: batch latency percentiles and throughput at 100% busy."""

    batch_size: int
    latency_p50_ms: float
    latency_p99_ms: float
    items_per_s: float
    busy_fraction: float | None = None
    #: Peak memory of the model process at this batch (weights + activations), if measured.
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        try:
            _PointSchema.model_validate(self.to_dict())
        except ValidationError as exc:
            raise ProfileError(_explain(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batch_size": self.batch_size,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "items_per_s": self.items_per_s,
        }
        if self.busy_fraction is not None:
            out["busy_fraction"] = self.busy_fraction
        if self.memory_bytes is not None:
            out["memory_bytes"] = self.memory_bytes
        return out


@dataclass(frozen=True, slots=True)
class Profile:
    """A model's batch curve on one device; ``points`` sorted by batch size."""

    model: str
    version: str
    device: str
    points: tuple[ProfilePoint, ...]
    weights_bytes: int | None = None
    utilization_source: str | None = None

    def __post_init__(self) -> None:
        if not self.points:
            raise ProfileError("a profile needs at least one point")
        sizes = [p.batch_size for p in self.points]
        if sizes != sorted(set(sizes)):
            raise ProfileError(
                f"profile points must have distinct batch sizes in increasing order, got {sizes}"
            )

    def point(self, batch_size: int) -> ProfilePoint:
        for p in self.points:
            if p.batch_size == batch_size:
                return p
        raise KeyError(f"no point for batch size {batch_size} in the profile of {self.model}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "device": self.device,
        }
        if self.weights_bytes is not None:
            out["weights_bytes"] = self.weights_bytes
        if self.utilization_source is not None:
            out["utilization_source"] = self.utilization_source
        out["points"] = [p.to_dict() for p in self.points]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        try:
            doc = _ProfileSchema.model_validate(data)
        except ValidationError as exc:
            raise ProfileError(_explain(exc)) from exc
        points = sorted(
            (
                ProfilePoint(
                    batch_size=p.batch_size,
                    latency_p50_ms=p.latency_p50_ms,
                    latency_p99_ms=p.latency_p99_ms,
                    items_per_s=p.items_per_s,
                    busy_fraction=p.busy_fraction,
                    memory_bytes=p.memory_bytes,
                )
                for p in doc.points
            ),
            key=lambda p: p.batch_size,
        )
        return cls(
            model=doc.model,
            version=doc.version,
            device=doc.device,
            points=tuple(points),
            weights_bytes=doc.weights_bytes,
            utilization_source=doc.utilization_source,
        )

    @classmethod
    def from_json(cls, text: str) -> Profile:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"profile is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile file; errors name the file and the field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile {p}: {exc.strerror or exc}") from exc
    try:
        return Profile.from_json(text)
    except ProfileError as exc:
        raise ProfileError(f"{p}: {exc}") from exc


def save_profile(profile: Profile, path: str | Path) -> None:
    Path(path).write_text(profile.to_json(), encoding="utf-8")


# --- schema (pydantic validates types and ranges; messages are rewritten by _explain) ---


class _PointSchema(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False)

    batch_size: int = Field(ge=1)
    latency_p50_ms: float = Field(gt=0)
    latency_p99_ms: float = Field(gt=0)
    items_per_s: float = Field(gt=0)
    busy_fraction: float | None = Field(default=None, ge=0, le=1)
    memory_bytes: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _p99_not_below_p50(self) -> _PointSchema:
        if self.latency_p99_ms < self.latency_p50_ms:
            raise ValueError(
                f"latency_p99_ms ({self.latency_p99_ms}) is below latency_p50_ms "
                f"({self.latency_p50_ms}) at batch size {self.batch_size}"
            )
        return self


class _ProfileSchema(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    version: str
    device: str = Field(min_length=1)
    points: list[_PointSchema] = Field(min_length=1)
    weights_bytes: int | None = Field(default=None, ge=0)
    utilization_source: str | None = None

    @model_validator(mode="after")
    def _distinct_batch_sizes(self) -> _ProfileSchema:
        sizes = [p.batch_size for p in self.points]
        dupes = sorted({s for s in sizes if sizes.count(s) > 1})
        if dupes:
            raise ValueError(f"batch sizes appear more than once: {dupes}")
        return self


def _explain(exc: ValidationError) -> str:
    """One line per problem: ``points[2].latency_p99_ms: Input should be greater than 0``."""
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "invalid profile: " + "; ".join(lines)
