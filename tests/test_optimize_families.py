"""Which family optimizes a model, and the embed family's reuse of its ONNX export.

No real model is loaded here: the subclasses fake ``load``, and the ONNX export and
quantization are replaced by stand-ins that record their calls.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tenfold.examples.classify import Classify
from tenfold.examples.embed import Embed
from tenfold.optimize import embed_family
from tenfold.optimize.embed_family import EmbedFamily
from tenfold.optimize.families import ClassifyFamily, OpaqueFamily, family_for
from tenfold.optimize.hardware import Hardware
from tenfold.optimize.optimizer import OptimizeConfig, optimize
from tenfold.optimize.serving import ONNX_FILE
from tenfold.optimize.variants import Built, Skipped, VariantName

CPU = Hardware(cpu_flags=frozenset({"avx2"}))


def _vector(sentence: str) -> Any:
    seed = int.from_bytes(hashlib.sha256(sentence.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(16)


class Rolled(Embed):
    """A user's embedder built on the example, whose vectors differ from MiniLM's."""

    name = "rolled"
    version = "rolled-v1"

    def load(self) -> None:
        self.model = None  # a stand-in: no MiniLM

    def predict(self, batch: list[str]) -> list[Any]:
        return [np.roll(_vector(s), 7) for s in batch]


class AlwaysSetosa(Classify):
    name = "setosa"

    def predict(self, batch: list[Any]) -> list[Any]:
        return [{"label": "setosa"} for _ in batch]


def test_only_the_bundled_examples_get_their_builders() -> None:
    assert isinstance(family_for("tenfold.examples.embed:Embed", Embed, 1), EmbedFamily)
    assert isinstance(family_for("tenfold.examples.classify:Classify", Classify, 1), ClassifyFamily)
    assert isinstance(family_for("test_optimize_families:Rolled", Rolled, 1), OpaqueFamily)
    assert isinstance(family_for("x:AlwaysSetosa", AlwaysSetosa, 1), OpaqueFamily)


def test_embed_subclass_is_measured_as_itself_and_not_rebuilt(tmp_path: Path) -> None:
    family = family_for("test_optimize_families:Rolled", Rolled, 1)
    baseline = family.baseline()
    probe = ["a sentence about cats", "another one"]
    for got, want in zip(baseline.predict(probe), Rolled().predict(probe), strict=True):
        np.testing.assert_array_equal(got, want)
    for variant in VariantName:
        result = family.build(variant, tmp_path, CPU, True)
        assert isinstance(result, Skipped)
        assert "not for other models or subclasses" in result.reason
    assert not any(tmp_path.iterdir())  # nothing built from the bundled model


def test_optimize_an_embed_subclass_serves_and_gates_nothing_of_minilm(tmp_path: Path) -> None:
    cal = tmp_path / "cal.jsonl"
    cal.write_text("".join(json.dumps(f"sentence number {i}") + "\n" for i in range(6)))
    out = tmp_path / "opt"
    config = OptimizeConfig(out_dir=out, calibration=cal, slice_s=0.01, rounds=1, batch_size=2)
    report = optimize("test_optimize_families:Rolled", config, hardware=CPU)
    body = json.loads((out / "report.json").read_text())
    assert report.recommended == "original" == body["recommended"]
    by_name = {v["name"]: v for v in body["variants"]}
    assert by_name["original"]["quality"]["min_cosine"] == pytest.approx(1.0)
    assert all(by_name[v.value]["skipped_reason"] for v in VariantName)
    assert not any((out / v.value).exists() for v in VariantName)  # no variant to serve


def test_classify_subclass_is_measured_as_itself() -> None:
    baseline = family_for("x:AlwaysSetosa", AlwaysSetosa, 1).baseline()
    inputs = Classify.input_model(
        sepal_length=6.7, sepal_width=3.0, petal_length=5.2, petal_width=2.3
    )
    assert baseline.predict([inputs]) == [{"label": "setosa"}]


class _Tokenizer:
    def save_pretrained(self, directory: str) -> None:
        (Path(directory) / "tokenizer.json").write_text("{}")


class _St:
    tokenizer = _Tokenizer()
    max_seq_length = 128


@pytest.fixture
def onnx_calls(monkeypatch: pytest.MonkeyPatch) -> tuple[EmbedFamily, list[str]]:
    """An ``EmbedFamily`` whose export and quantization write marker files and log calls."""
    calls: list[str] = []

    def export(st: Any, path: Path) -> None:
        calls.append("export")
        path.write_text("fresh export")

    def quantize(source: Path, dest: Path) -> None:
        calls.append(f"quantize {source.read_text()}")
        dest.write_text("int8 of " + source.read_text())

    monkeypatch.setattr(embed_family, "export_onnx", export)
    monkeypatch.setattr(embed_family, "quantize_onnx_int8", quantize)
    family = EmbedFamily(threads=1)
    family._st = _St()
    monkeypatch.setattr(
        family, "_load", lambda manifest, directory, size: Built(lambda b: b, size, manifest)
    )
    return family, calls


def test_onnx_int8_does_not_reuse_a_stale_export(
    tmp_path: Path, onnx_calls: tuple[EmbedFamily, list[str]]
) -> None:
    family, calls = onnx_calls
    stale = tmp_path / VariantName.ONNX_FP32.value
    stale.mkdir()
    (stale / ONNX_FILE).write_text("another model, from an earlier run")
    family.build(VariantName.ONNX_INT8, tmp_path, CPU, False)
    assert calls == ["export", "quantize fresh export"]
    assert (tmp_path / "onnx-int8" / ONNX_FILE).read_text() == "int8 of fresh export"


def test_onnx_int8_quantizes_the_export_of_this_run(
    tmp_path: Path, onnx_calls: tuple[EmbedFamily, list[str]]
) -> None:
    family, calls = onnx_calls
    family.build(VariantName.ONNX_FP32, tmp_path, CPU, False)
    family.build(VariantName.ONNX_INT8, tmp_path, CPU, False)
    assert calls == ["export", "quantize fresh export"]  # exported once
    assert not (tmp_path / "onnx-int8" / "model-fp32.onnx").exists()
