"""``optimize()``: build each variant, measure it against the original, rank, report.

The steps are separate so tests can hand :func:`evaluate` a variant of their own
(for instance one with random weights, which must fail the gate)::

    family = family_for(target, cls, threads)
    baseline = family.baseline()
    built = {v.value: family.build(v, out_dir, hw, force) for v in variants}
    report = evaluate(target, family.baseline_name, baseline, built, calibration, config,
                      hw.describe(), threads)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.model import load_model_class, resolve_target
from tenfold.optimize.calibration import Calibration, read_jsonl
from tenfold.optimize.errors import OptimizeError
from tenfold.optimize.families import family_for
from tenfold.optimize.hardware import Hardware, detect
from tenfold.optimize.measure import measure_throughput
from tenfold.optimize.quality import (
    NEEDS_METRIC,
    Gate,
    Metric,
    QualityKind,
    guess_kind,
    measure_quality,
)
from tenfold.optimize.report import Report, VariantResult, rank
from tenfold.optimize.variants import Built, Skipped, VariantName

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class OptimizeConfig:
    out_dir: Path
    variants: tuple[VariantName, ...] = tuple(VariantName)
    batch_size: int = 32
    gate: Gate = field(default_factory=Gate)
    calibration: Path | None = None
    #: Size of the default calibration set (bundled examples) and cap on a file's.
    samples: int = 128
    seed: int = 0
    #: Seconds each variant runs per round and batch size (3 rounds each).
    slice_s: float = 1.0
    rounds: int = 3
    top_k: int = 10
    #: Build variants even where the hardware has no native support (to inspect them).
    force: bool = False
    metric: Metric | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.samples < 2:
            raise ValueError(f"samples must be >= 2, got {self.samples}")
        if self.slice_s <= 0 or self.rounds < 1:
            raise ValueError("slice_s must be > 0 and rounds >= 1")


def default_calibration(target: str, samples: int, seed: int) -> Calibration:
    """The calibration set a bundled example ships; other models need a file."""
    if target == "tenfold.examples.embed:Embed":
        from tenfold.examples.sentences import sentences

        return Calibration(inputs=sentences(samples, seed))
    if target == "tenfold.examples.classify:Classify":
        from sklearn.datasets import load_iris

        from tenfold.examples.classify import Flower

        data = load_iris()
        names = ("sepal_length", "sepal_width", "petal_length", "petal_width")
        inputs = [Flower(**dict(zip(names, map(float, row), strict=True))) for row in data.data]
        labels = [str(data.target_names[t]) for t in data.target]
        return Calibration(inputs=inputs, labels=labels)
    raise OptimizeError(f"{target} ships no calibration set: pass --calibration FILE.jsonl")


def evaluate(
    target: str,
    baseline_name: str,
    baseline: Built,
    candidates: Mapping[str, Built | Skipped],
    calibration: Calibration,
    config: OptimizeConfig,
    hardware: str,
    threads: int,
    progress: Progress = lambda _: None,
) -> Report:
    """Measure quality, throughput (batch 1 and ``batch_size``) and size; rank."""
    inputs = calibration.inputs
    progress(f"{baseline_name}: reference outputs on {len(inputs)} inputs")
    reference = _run_all(baseline, inputs, config.batch_size)
    kind = QualityKind.METRIC if config.metric else guess_kind(reference)
    if kind is QualityKind.METRIC and config.metric is None:
        raise OptimizeError(NEEDS_METRIC)
    built = {name: c for name, c in candidates.items() if isinstance(c, Built)}
    qualities = {}
    for name, b in built.items():
        progress(f"{name}: quality on {len(inputs)} inputs")
        outputs = _run_all(b, inputs, config.batch_size)
        qualities[name] = measure_quality(
            kind,
            reference,
            outputs,
            labels=calibration.labels,
            metric=config.metric,
            top_k=config.top_k,
        )
    baseline_quality = measure_quality(
        kind,
        reference,
        reference,
        labels=calibration.labels,
        metric=config.metric,
        top_k=config.top_k,
    )
    predicts = {baseline_name: baseline.predict} | {n: b.predict for n, b in built.items()}
    speed = {}
    for size in dict.fromkeys((1, config.batch_size)):
        progress(f"throughput at batch {size}: {', '.join(predicts)} (interleaved)")
        speed[size] = measure_throughput(
            predicts, baseline_name, inputs, size, slice_s=config.slice_s, rounds=config.rounds
        )
    results = [
        VariantResult(
            name=baseline_name,
            speedup_batch1=1.0,
            speedup_batch=1.0,
            items_per_s_batch1=speed[1][baseline_name].items_per_s,
            items_per_s_batch=speed[config.batch_size][baseline_name].items_per_s,
            size_bytes=baseline.size_bytes,
            size_ratio=1.0,
            quality=baseline_quality,
            passed_gate=True,
        )
    ]
    for name, c in candidates.items():
        if isinstance(c, Skipped):
            results.append(VariantResult(name=name, skipped_reason=c.reason))
            continue
        b1, bn = speed[1][name], speed[config.batch_size][name]
        quality = qualities[name]
        results.append(
            VariantResult(
                name=name,
                speedup_batch1=b1.speedup,
                speedup_batch=bn.speedup,
                items_per_s_batch1=b1.items_per_s,
                items_per_s_batch=bn.items_per_s,
                size_bytes=c.size_bytes,
                size_ratio=c.size_bytes / baseline.size_bytes if baseline.size_bytes else None,
                quality=quality,
                passed_gate=quality.passes(config.gate),
                directory=str(config.out_dir / name) if c.manifest else None,
            )
        )
    return Report(
        target=target,
        baseline=baseline_name,
        hardware=hardware,
        batch_size=config.batch_size,
        samples=len(inputs),
        threads=threads,
        gate=config.gate,
        results=rank(results),
    )


def _threads() -> int:
    """Threads the original uses; ONNX Runtime variants get as many, for a fair ratio."""
    try:
        import torch
    except ImportError:
        return os.cpu_count() or 1
    return int(torch.get_num_threads())


def _run_all(built: Built, inputs: list[Any], batch_size: int) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(inputs), batch_size):
        out.extend(built.predict(inputs[start : start + batch_size]))
    return out


def optimize(
    target: str,
    config: OptimizeConfig,
    *,
    hardware: Hardware | None = None,
    progress: Progress = lambda _: None,
) -> Report:
    """Build every requested variant of ``target`` (``module:Class`` or an example name)
    under ``config.out_dir``, measure them and write ``report.json`` / ``report.md``."""
    try:
        target = resolve_target(target)
        cls = load_model_class(target)
    except ValueError as exc:
        raise OptimizeError(str(exc)) from exc
    hw = hardware or detect()
    threads = _threads()
    if config.calibration is not None:
        calibration = read_jsonl(config.calibration, cls.input_model)
        calibration = Calibration(
            inputs=calibration.inputs[: config.samples],
            labels=calibration.labels[: config.samples] if calibration.labels else None,
        )
    else:
        calibration = default_calibration(target, config.samples, config.seed)
    family = family_for(target, cls, threads)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    progress(f"{family.baseline_name}: loading the original model")
    baseline = family.baseline()
    candidates: dict[str, Built | Skipped] = {}
    for variant in config.variants:
        progress(f"{variant.value}: building")
        result = family.build(variant, config.out_dir, hw, config.force)
        if isinstance(result, Skipped):
            progress(f"{variant.value}: skipped ({result.reason})")
            log.info("%s skipped: %s", variant.value, result.reason)
        candidates[variant.value] = result
    report = evaluate(
        target,
        family.baseline_name,
        baseline,
        candidates,
        calibration,
        config,
        hw.describe(),
        threads,
        progress,
    )
    report.write(config.out_dir)
    return report
