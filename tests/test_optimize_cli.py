from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenfold.model import Model
from tenfold.optimize.cli import app
from tenfold.optimize.errors import OptimizeError
from tenfold.optimize.optimizer import OptimizeConfig, optimize

runner = CliRunner()


class Upper(Model[str, str]):
    """A model tenfold has no variant builder for (used by target test_optimize_cli:Upper)."""

    name = "upper"

    def predict(self, batch: list[str]) -> list[str]:
        return [s.upper() for s in batch]


class Double(Model[float, float]):
    """Scalar outputs: neither vectors nor labels, so the gate needs --metric."""

    name = "double"

    def predict(self, batch: list[float]) -> list[float]:
        return [2.0 * x for x in batch]


def same_share(reference: list[str], outputs: list[str]) -> float:
    return sum(r == o for r, o in zip(reference, outputs, strict=True)) / len(reference)


def test_classify_example_reports_baseline_and_reasons(tmp_path: Path) -> None:
    out = tmp_path / "opt"
    result = runner.invoke(app, ["--example", "classify", "--out", str(out), "--slice-s", "0.02"])
    assert result.exit_code == 0, result.output
    body = json.loads((out / "report.json").read_text())
    assert body["recommended"] == "sklearn"
    by_name = {v["name"]: v for v in body["variants"]}
    assert set(by_name) == {"sklearn", "onnx-fp32", "onnx-int8", "torch-int8", "fp16", "bf16"}
    assert "skl2onnx" in by_name["onnx-int8"]["skipped_reason"]
    assert "scikit-learn" in by_name["bf16"]["skipped_reason"]
    quality = by_name["sklearn"]["quality"]
    assert quality["kind"] == "classifier" and quality["agreement"] == 1.0
    assert 0.9 < quality["accuracy"] <= 1.0  # iris, measured against the true labels
    assert by_name["sklearn"]["speedup_batch"] == 1.0
    assert "sklearn" in result.output


def test_user_model_with_calibration_file_and_metric(tmp_path: Path) -> None:
    cal = tmp_path / "cal.jsonl"
    cal.write_text("\n".join(json.dumps(s) for s in ["a b", "c d", "e f"]) + "\n")
    out = tmp_path / "opt"
    args = ["test_optimize_cli:Upper", "--calibration", str(cal), "--out", str(out)]
    args += ["--metric", "test_optimize_cli:same_share", "--variants", "onnx-int8"]
    result = runner.invoke(app, [*args, "--slice-s", "0.02"])
    assert result.exit_code == 0, result.output
    body = json.loads((out / "report.json").read_text())
    assert [v["name"] for v in body["variants"]] == ["original", "onnx-int8"]
    assert body["variants"][0]["quality"] == {"kind": "metric", "metric": 1.0}
    assert "no onnx-int8 builder" in body["variants"][1]["skipped_reason"]


def test_user_model_without_calibration_is_an_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["test_optimize_cli:Upper", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--calibration" in result.output


def test_target_and_example_are_exclusive(tmp_path: Path) -> None:
    result = runner.invoke(app, ["x:Y", "--example", "embed", "--out", str(tmp_path)])
    assert result.exit_code != 0
    bad = runner.invoke(app, ["--example", "embed", "--out", str(tmp_path), "--variants", "int4"])
    assert bad.exit_code != 0
    assert "int4" in bad.output


def _error_line(output: str) -> str:
    """The one line the CLI prints for an error (no traceback, not wrapped)."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def test_bad_target_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["foo", "--out", str(tmp_path / "opt")])
    assert result.exit_code == 2
    assert "must be MODULE:CLASS" in _error_line(result.output)
    with pytest.raises(OptimizeError, match="must be MODULE:CLASS"):
        optimize("foo", OptimizeConfig(out_dir=tmp_path / "opt"))


def test_scalar_outputs_without_metric_is_a_one_line_error(tmp_path: Path) -> None:
    cal = tmp_path / "cal.jsonl"
    cal.write_text("1.0\n2.0\n3.0\n")
    args = ["test_optimize_cli:Double", "--calibration", str(cal), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--slice-s", "0.02"])
    assert result.exit_code == 2
    assert _error_line(result.output).endswith(
        "outputs are neither vectors nor labels: pass a metric function (--metric MODULE:FUNC)"
    )
