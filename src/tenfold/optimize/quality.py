"""Quality of a variant's outputs against the original model's, and the gate.

Pure functions over outputs already computed, so every number here is measured,
never assumed. Three kinds:

* embeddings (vectors): mean / min cosine per input and top-k retrieval agreement
  (how many of each input's k nearest neighbours among the calibration set stay the same);
* classifiers (labels): agreement with the original, and accuracy against true labels
  when the calibration set has them;
* anything else: a user-supplied ``metric(reference, outputs) -> float`` (higher is better).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

Metric = Callable[[list[Any], list[Any]], float]

#: Why outputs that are neither vectors nor labels cannot be gated without a metric.
NEEDS_METRIC = (
    "outputs are neither vectors nor labels: pass a metric function (--metric MODULE:FUNC)"
)


class QualityKind(StrEnum):
    EMBEDDING = "embedding"
    CLASSIFIER = "classifier"
    METRIC = "metric"


@dataclass(frozen=True, slots=True)
class Gate:
    """Pass/fail thresholds: ``--min-cosine``, ``--max-accuracy-drop``, ``--min-metric``."""

    min_cosine: float = 0.98
    max_accuracy_drop: float = 0.01
    min_metric: float = 0.99

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
        if not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise ValueError(f"max_accuracy_drop must be in [0, 1], got {self.max_accuracy_drop}")


@dataclass(frozen=True, slots=True)
class Quality:
    kind: QualityKind
    #: embeddings
    mean_cosine: float | None = None
    min_cosine: float | None = None
    topk_agreement: float | None = None
    top_k: int | None = None
    #: classifiers: share of inputs whose label matches the original's
    agreement: float | None = None
    #: classifiers with true labels
    accuracy: float | None = None
    reference_accuracy: float | None = None
    #: user metric
    metric: float | None = None

    def passes(self, gate: Gate) -> bool:
        if self.kind is QualityKind.EMBEDDING:
            return self.min_cosine is not None and self.min_cosine >= gate.min_cosine
        if self.kind is QualityKind.CLASSIFIER:
            return self.accuracy_drop() <= gate.max_accuracy_drop + 1e-12
        return self.metric is not None and self.metric >= gate.min_metric

    def accuracy_drop(self) -> float:
        """Accuracy lost against true labels when known, else the share of changed labels."""
        if self.accuracy is not None and self.reference_accuracy is not None:
            return self.reference_accuracy - self.accuracy
        return 1.0 - (self.agreement if self.agreement is not None else 0.0)

    def summary(self) -> str:
        if self.kind is QualityKind.EMBEDDING:
            return (
                f"cos {self.mean_cosine:.4f}/{self.min_cosine:.4f} "
                f"top{self.top_k} {self.topk_agreement:.3f}"
            )
        if self.kind is QualityKind.CLASSIFIER:
            text = f"agree {self.agreement:.3f}"
            if self.accuracy is not None:
                text += f" acc {self.accuracy:.3f} (was {self.reference_accuracy:.3f})"
            return text
        return f"metric {self.metric:.4f}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value}
        for key in (
            "mean_cosine",
            "min_cosine",
            "topk_agreement",
            "top_k",
            "agreement",
            "accuracy",
            "reference_accuracy",
            "metric",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def _as_matrix(outputs: Sequence[Any]) -> npt.NDArray[np.float64]:
    matrix = np.asarray([np.asarray(o, dtype=np.float64).ravel() for o in outputs])
    if matrix.ndim != 2 or len(matrix) == 0:
        raise ValueError("embedding outputs must be a non-empty list of equal-length vectors")
    return matrix


def _unit_rows(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.asarray(m / np.maximum(norms, 1e-12))


def topk_neighbours(unit: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """Indices of each row's ``k`` most cosine-similar other rows (self excluded)."""
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return np.asarray(np.argsort(-sims, axis=1, kind="stable")[:, :k], dtype=np.int64)


def embedding_quality(reference: Sequence[Any], outputs: Sequence[Any], k: int = 10) -> Quality:
    ref = _unit_rows(_as_matrix(reference))
    out = _unit_rows(_as_matrix(outputs))
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape}, variant {out.shape}")
    cos = np.sum(ref * out, axis=1)
    k = max(1, min(k, len(ref) - 1))
    if len(ref) > 1:
        a, b = topk_neighbours(ref, k), topk_neighbours(out, k)
        overlap = [len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist(), strict=True)]
        agreement = float(np.mean(overlap))
    else:
        agreement = 1.0
    return Quality(
        kind=QualityKind.EMBEDDING,
        mean_cosine=float(np.mean(cos)),
        min_cosine=float(np.min(cos)),
        topk_agreement=agreement,
        top_k=k,
    )


def label_of(output: Any) -> Any:
    """A classifier output's label: ``{"label": ...}`` (as ``classify`` returns) or the value."""
    if isinstance(output, dict) and "label" in output:
        return output["label"]
    return output


def classifier_quality(
    reference: Sequence[Any], outputs: Sequence[Any], labels: Sequence[Any] | None = None
) -> Quality:
    if len(reference) != len(outputs) or not reference:
        raise ValueError("reference and variant outputs must be non-empty and of equal length")
    ref = [label_of(o) for o in reference]
    out = [label_of(o) for o in outputs]
    agreement = sum(r == o for r, o in zip(ref, out, strict=True)) / len(ref)
    if labels is None:
        return Quality(kind=QualityKind.CLASSIFIER, agreement=agreement)
    if len(labels) != len(ref):
        raise ValueError("one true label per calibration input is needed")
    accuracy = sum(o == y for o, y in zip(out, labels, strict=True)) / len(ref)
    reference_accuracy = sum(r == y for r, y in zip(ref, labels, strict=True)) / len(ref)
    return Quality(
        kind=QualityKind.CLASSIFIER,
        agreement=agreement,
        accuracy=accuracy,
        reference_accuracy=reference_accuracy,
    )


def metric_quality(reference: list[Any], outputs: list[Any], metric: Metric) -> Quality:
    return Quality(kind=QualityKind.METRIC, metric=float(metric(reference, outputs)))


def guess_kind(outputs: Sequence[Any]) -> QualityKind:
    """Embedding when outputs are numeric vectors, classifier when labels, else metric."""
    first = outputs[0]
    if isinstance(first, dict) and "label" in first:
        return QualityKind.CLASSIFIER
    if isinstance(first, str | int | bool | np.integer):
        return QualityKind.CLASSIFIER
    try:
        vec = np.asarray(first, dtype=np.float64)
    except (TypeError, ValueError):
        return QualityKind.METRIC
    return QualityKind.EMBEDDING if vec.ndim == 1 and vec.size > 1 else QualityKind.METRIC


def measure_quality(
    kind: QualityKind,
    reference: list[Any],
    outputs: list[Any],
    *,
    labels: Sequence[Any] | None = None,
    metric: Metric | None = None,
    top_k: int = 10,
) -> Quality:
    if metric is not None:
        return metric_quality(reference, outputs, metric)
    if kind is QualityKind.EMBEDDING:
        return embedding_quality(reference, outputs, top_k)
    if kind is QualityKind.CLASSIFIER:
        return classifier_quality(reference, outputs, labels)
    raise ValueError(NEEDS_METRIC)
