from __future__ import annotations

import numpy as np
import pytest

from tenfold.optimize.quality import (
    Gate,
    QualityKind,
    classifier_quality,
    embedding_quality,
    guess_kind,
    measure_quality,
    topk_neighbours,
)


def _vectors(n: int = 40, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))


def test_identical_embeddings_have_cosine_one_and_full_agreement() -> None:
    ref = _vectors()
    q = embedding_quality(list(ref), list(ref * 3.0), k=5)  # scale does not change cosine
    assert q.mean_cosine == pytest.approx(1.0)
    assert q.min_cosine == pytest.approx(1.0)
    assert q.topk_agreement == 1.0
    assert q.passes(Gate(min_cosine=0.999))


def test_small_noise_passes_large_noise_and_random_fail_the_gate() -> None:
    rng = np.random.default_rng(1)
    ref = _vectors()
    slight = ref + rng.normal(scale=0.01, size=ref.shape)
    heavy = ref + rng.normal(scale=1.0, size=ref.shape)
    random = rng.normal(size=ref.shape)
    q_slight = embedding_quality(list(ref), list(slight))
    q_heavy = embedding_quality(list(ref), list(heavy))
    q_random = embedding_quality(list(ref), list(random))
    gate = Gate(min_cosine=0.98)
    assert q_slight.passes(gate)
    assert not q_heavy.passes(gate)
    assert not q_random.passes(gate)
    assert q_slight.min_cosine > q_heavy.min_cosine > q_random.min_cosine  # type: ignore[operator]
    assert q_random.topk_agreement < q_slight.topk_agreement  # type: ignore[operator]


def test_topk_neighbours_excludes_self_and_finds_the_closest() -> None:
    unit = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0], [-1.0, 0.0]])
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    nn = topk_neighbours(unit, 1)
    assert nn[:, 0].tolist() == [1, 0, 1, 2]


def test_topk_agreement_counts_changed_neighbours() -> None:
    # Four points on a line: swapping two embeddings changes some neighbour sets.
    ref = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]
    swapped = [[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]]
    q = embedding_quality(ref, swapped, k=1)
    assert 0.0 <= q.topk_agreement < 1.0  # type: ignore[operator]
    assert q.min_cosine < 0.2  # type: ignore[operator]


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        embedding_quality([[1.0, 0.0]], [[1.0, 0.0, 0.0]])


def test_classifier_quality_with_labels_gates_on_accuracy_drop() -> None:
    ref = [{"label": "a"}] * 8 + [{"label": "b"}] * 2
    truth = ["a"] * 8 + ["b"] * 2
    one_wrong = [{"label": "a"}] * 8 + [{"label": "b"}, {"label": "a"}]
    q = classifier_quality(ref, one_wrong, truth)
    assert q.agreement == pytest.approx(0.9)
    assert q.accuracy == pytest.approx(0.9)
    assert q.reference_accuracy == pytest.approx(1.0)
    assert q.accuracy_drop() == pytest.approx(0.1)
    assert not q.passes(Gate(max_accuracy_drop=0.01))
    assert q.passes(Gate(max_accuracy_drop=0.1))


def test_classifier_quality_without_labels_uses_agreement() -> None:
    q = classifier_quality(["x", "y", "z", "x"], ["x", "y", "z", "y"])
    assert q.accuracy is None
    assert q.accuracy_drop() == pytest.approx(0.25)
    assert not q.passes(Gate(max_accuracy_drop=0.2))


def test_user_metric_is_called_with_both_output_lists() -> None:
    seen: list[tuple[list[object], list[object]]] = []

    def metric(ref: list[object], out: list[object]) -> float:
        seen.append((ref, out))
        return 0.5

    q = measure_quality(QualityKind.METRIC, [1, 2], [1, 3], metric=metric)
    assert seen == [([1, 2], [1, 3])]
    assert q.metric == 0.5
    assert not q.passes(Gate(min_metric=0.9))
    assert q.passes(Gate(min_metric=0.5))


@pytest.mark.parametrize(
    ("outputs", "kind"),
    [
        ([[0.1, 0.2, 0.3]], QualityKind.EMBEDDING),
        ([np.zeros(4, dtype=np.float32)], QualityKind.EMBEDDING),
        ([{"label": "setosa", "probabilities": {}}], QualityKind.CLASSIFIER),
        (["yes"], QualityKind.CLASSIFIER),
        ([{"text": "hello"}], QualityKind.METRIC),
        ([3.5], QualityKind.METRIC),
    ],
)
def test_guess_kind(outputs: list[object], kind: QualityKind) -> None:
    assert guess_kind(outputs) is kind


def test_no_metric_for_opaque_outputs_is_an_error() -> None:
    with pytest.raises(ValueError, match="--metric"):
        measure_quality(QualityKind.METRIC, [{"a": 1}], [{"a": 1}])


@pytest.mark.parametrize(
    "kwargs", [{"min_cosine": 1.5}, {"max_accuracy_drop": -0.1}, {"max_accuracy_drop": 2.0}]
)
def test_gate_rejects_impossible_thresholds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Gate(**kwargs)
