from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenfold.optimize.calibration import read_jsonl
from tenfold.optimize.errors import CalibrationError, VariantError
from tenfold.optimize.quality import Gate, Quality, QualityKind
from tenfold.optimize.report import Report, VariantResult, rank, recommend
from tenfold.optimize.variants import VariantManifest, VariantName

GOOD = Quality(
    QualityKind.EMBEDDING, mean_cosine=0.99, min_cosine=0.985, topk_agreement=0.9, top_k=10
)
BAD = Quality(QualityKind.EMBEDDING, mean_cosine=0.9, min_cosine=0.8, topk_agreement=0.5, top_k=10)


def _result(name: str, speed: float, passed: bool, skipped: str | None = None) -> VariantResult:
    if skipped:
        return VariantResult(name=name, skipped_reason=skipped)
    return VariantResult(
        name=name,
        speedup_batch1=speed,
        speedup_batch=speed,
        size_ratio=0.5,
        quality=GOOD if passed else BAD,
        passed_gate=passed,
    )


def test_rank_puts_passing_by_speed_then_failing_then_skipped() -> None:
    results = [
        _result("bf16", 0, False, skipped="no native bf16"),
        _result("torch-int8", 2.5, False),
        _result("torch-fp32", 1.0, True),
        _result("onnx-fp32", 1.4, True),
        _result("onnx-int8", 1.9, True),
    ]
    names = [r.name for r in rank(results)]
    assert names == ["onnx-int8", "onnx-fp32", "torch-fp32", "torch-int8", "bf16"]
    assert recommend(rank(results), "torch-fp32") == "onnx-int8"


def test_recommend_keeps_the_original_when_nothing_passing_is_faster() -> None:
    results = rank(
        [_result("torch-fp32", 1.0, True), _result("x", 0.7, True), _result("y", 3, False)]
    )
    assert recommend(results, "torch-fp32") == "torch-fp32"


def test_report_json_and_markdown(tmp_path: Path) -> None:
    report = Report(
        target="t:T",
        hardware="CPU (avx2)",
        batch_size=32,
        samples=10,
        threads=2,
        gate=Gate(),
        baseline="torch-fp32",
        results=rank(
            [
                _result("torch-fp32", 1.0, True),
                _result("onnx-int8", 1.9, True),
                _result("bf16", 0, False, skipped="no native bf16"),
            ]
        ),
    )
    report.write(tmp_path)
    body = json.loads((tmp_path / "report.json").read_text())
    assert body["recommended"] == "onnx-int8"
    assert [v["name"] for v in body["variants"]] == ["onnx-int8", "torch-fp32", "bf16"]
    required = {
        "name",
        "speedup_batch1",
        "speedup_batch",
        "size_ratio",
        "quality",
        "passed_gate",
        "skipped_reason",
    }
    assert all(required <= set(v) for v in body["variants"])
    assert body["variants"][2]["skipped_reason"] == "no native bf16"
    assert body["variants"][0]["quality"]["min_cosine"] == 0.985
    md = (tmp_path / "report.md").read_text()
    assert "| onnx-int8 | 1.90x | 1.90x | 0.50x |" in md
    assert "Recommended: **onnx-int8**" in md


def test_manifest_round_trip_and_errors(tmp_path: Path) -> None:
    m = VariantManifest("pkg.mod:Cls", {"path": "/x", "version": "1+onnx"}, "1+onnx")
    m.write(tmp_path)
    assert VariantManifest.read(tmp_path) == m
    with pytest.raises(VariantError, match="not found"):
        VariantManifest.read(tmp_path / "missing")
    (tmp_path / "variant.json").write_text('{"target": "nocolon", "options": {}, "version": "1"}')
    with pytest.raises(VariantError, match="target"):
        VariantManifest.read(tmp_path)


def test_variant_names_parse() -> None:
    assert VariantName.parse_list("onnx-int8, fp16,onnx-int8") == [
        VariantName.ONNX_INT8,
        VariantName.FP16,
    ]
    with pytest.raises(ValueError, match="unknown variant 'int4'"):
        VariantName.parse_list("onnx-fp32,int4")


def test_calibration_jsonl_validates_and_reads_labels(tmp_path: Path) -> None:
    path = tmp_path / "cal.jsonl"
    path.write_text('{"input": "a b", "label": "x"}\n\n{"input": "c", "label": "y"}\n')
    cal = read_jsonl(path, str)
    assert cal.inputs == ["a b", "c"] and cal.labels == ["x", "y"]
    path.write_text('"fine"\n42\n')
    with pytest.raises(CalibrationError, match=":2: invalid input"):
        read_jsonl(path, str)
    path.write_text('"fine"\n{"input": "x", "label": 1}\n')
    with pytest.raises(CalibrationError, match="some lines have a label"):
        read_jsonl(path, str)
    path.write_text("")
    with pytest.raises(CalibrationError, match="empty"):
        read_jsonl(path, str)
