"""The embed example end to end: every variant builds, loads, and is measured (real model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serve_support import served
from tenfold.examples.embed import Embed
from tenfold.examples.sentences import sentences
from tenfold.optimize.calibration import Calibration
from tenfold.optimize.embed_family import EmbedFamily
from tenfold.optimize.hardware import Hardware
from tenfold.optimize.optimizer import OptimizeConfig, evaluate, optimize
from tenfold.optimize.quality import Gate, embedding_quality
from tenfold.optimize.report import Report
from tenfold.optimize.serving import OnnxEmbed, TorchEmbed, load_variant
from tenfold.optimize.variants import Built, VariantManifest, VariantName

pytestmark = pytest.mark.slow

AVX2_ONLY = Hardware(cpu_flags=frozenset({"avx", "avx2", "f16c", "fma"}))
NATIVE_BF16 = Hardware(cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16"}))
PROBE = sentences(8, seed=99)


@pytest.fixture(scope="module")
def original() -> Embed:
    model = Embed()
    model.load()
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report]:
    out = tmp_path_factory.mktemp("opt")
    config = OptimizeConfig(out_dir=out, batch_size=8, samples=16, slice_s=0.1, rounds=1)
    messages: list[str] = []
    report = optimize("embed", config, hardware=AVX2_ONLY, progress=messages.append)
    # Progress is reported per variant.
    for v in VariantName:
        assert any(m.startswith(f"{v.value}: building") for m in messages)
    return out, report


def test_report_files_rank_and_recommend(run: tuple[Path, Report]) -> None:
    out, report = run
    body = json.loads((out / "report.json").read_text())
    names = [v["name"] for v in body["variants"]]
    assert sorted(names) == sorted(["torch-fp32", *(v.value for v in VariantName)])
    assert body["recommended"] == report.recommended
    assert "Recommended" in (out / "report.md").read_text()
    passing = [v for v in body["variants"] if v["passed_gate"]]
    speeds = [v["speedup_batch"] for v in passing]
    assert speeds == sorted(speeds, reverse=True)
    rec = report.result(report.recommended)
    assert rec.passed_gate


def test_onnx_variants_measured_and_within_gate(run: tuple[Path, Report]) -> None:
    _, report = run
    fp32, int8 = report.result("onnx-fp32"), report.result("onnx-int8")
    assert fp32.quality is not None and fp32.quality.min_cosine is not None
    assert fp32.quality.min_cosine > 0.9999  # the same math, exported (eval mode)
    assert int8.quality is not None and int8.quality.min_cosine is not None
    assert 0.98 <= int8.quality.min_cosine < 0.9999  # quantization changes outputs a little
    assert int8.passed_gate and fp32.passed_gate
    assert int8.size_ratio is not None and int8.size_ratio < 0.35  # int8 weights: ~1/4
    for r in (fp32, int8):
        assert r.speedup_batch1 is not None and r.speedup_batch1 > 0
        assert r.speedup_batch is not None and r.speedup_batch > 0
        assert r.items_per_s_batch is not None and r.items_per_s_batch > 0


def test_torch_int8_quality_is_measured_not_assumed(run: tuple[Path, Report]) -> None:
    _, report = run
    r = report.result("torch-int8")
    assert r.skipped_reason is None and r.quality is not None
    assert r.quality.min_cosine is not None and r.quality.mean_cosine is not None
    assert r.quality.min_cosine < r.quality.mean_cosine < 0.999
    assert r.passed_gate == (r.quality.min_cosine >= 0.98)


def test_half_precision_skipped_with_reason_without_native_support(
    run: tuple[Path, Report],
) -> None:
    out, report = run
    for name in ("fp16", "bf16"):
        r = report.result(name)
        assert r.skipped_reason is not None and "no native" in r.skipped_reason
        assert r.quality is None and not r.passed_gate
        assert not (out / name).exists()


@pytest.mark.parametrize("variant", ["onnx-fp32", "onnx-int8", "torch-int8"])
def test_served_variant_matches_original_within_gate(
    run: tuple[Path, Report], original: Embed, variant: str
) -> None:
    out, _ = run
    manifest = VariantManifest.read(out / variant)
    assert manifest.version == f"{Embed.version}+{variant}"
    model = load_variant(out / variant)
    expected_cls = TorchEmbed if variant == "torch-int8" else OnnxEmbed
    assert type(model) is expected_cls
    assert model.name == "embed" and model.version == manifest.version
    assert model.item_size("three word sentence") == original.item_size("three word sentence")
    model.load()
    q = embedding_quality(original.predict(PROBE), model.predict(PROBE))
    assert q.min_cosine is not None
    if variant != "torch-int8":
        assert q.passes(Gate(min_cosine=0.98))
    outputs = model.predict(PROBE[:2])
    assert len(outputs) == 2 and np.asarray(outputs[0]).shape == (384,)


@pytest.mark.parametrize(
    ("variant", "hw", "force"),
    [(VariantName.FP16, AVX2_ONLY, True), (VariantName.BF16, NATIVE_BF16, False)],
)
def test_half_precision_variants_build_and_load(
    tmp_path: Path, original: Embed, variant: VariantName, hw: Hardware, force: bool
) -> None:
    built = EmbedFamily().build(variant, tmp_path, hw, force)
    assert isinstance(built, Built)
    model = load_variant(tmp_path / variant.value)
    model.load()
    assert model.version.endswith("+" + variant.value)
    q = embedding_quality(original.predict(PROBE[:4]), model.predict(PROBE[:4]))
    assert q.passes(Gate(min_cosine=0.99))
    # half the bytes of fp32 weights
    assert 0.4 < built.size_bytes / EmbedFamily().baseline_size_bytes() < 0.6


def test_random_weights_fail_the_gate(original: Embed, tmp_path: Path) -> None:
    import copy

    import torch

    broken = copy.deepcopy(original.model)  # same architecture and tokenizer, random weights
    torch.manual_seed(0)
    with torch.no_grad():
        for p in broken.parameters():
            p.normal_(0.0, 0.05)

    def predict_broken(batch: list[str]) -> list[Any]:
        return list(broken.encode(batch, batch_size=len(batch), show_progress_bar=False))

    cal = Calibration(inputs=sentences(16, seed=5))
    baseline = Built(predict=original.predict, size_bytes=1)
    candidates: dict[str, Any] = {"random": Built(predict=predict_broken, size_bytes=1)}
    config = OptimizeConfig(out_dir=tmp_path, batch_size=8, samples=16, slice_s=0.05, rounds=1)
    report = evaluate("embed", "torch-fp32", baseline, candidates, cal, config, "cpu", 2)
    r = report.result("random")
    assert r.quality is not None and r.quality.min_cosine is not None
    assert r.quality.min_cosine < 0.9 and not r.passed_gate
    assert report.recommended != "random"


def test_tenfold_serve_variant_returns_outputs_within_gate(
    run: tuple[Path, Report], original: Embed, tmp_path: Path
) -> None:
    """The real server (``tenfold serve --variant``) in its own process serves onnx-int8."""
    import httpx

    out, _ = run
    log = tmp_path / "serve.log"
    args = ["--example", "embed", "--variant", str(out / "onnx-int8"), "--no-cache"]
    with served([*args, "--log-level", "warning"], log) as url:
        got = []
        for text in PROBE:
            r = httpx.post(
                url + "/v1/models/embed/predict",
                json={"input": text, "timeout_ms": 6e5},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            got.append(r.json()["output"])
    assert "all-MiniLM-L6-v2+onnx-int8" in log.read_text()  # the variant's version was served
    q = embedding_quality(original.predict(PROBE), got)
    assert q.passes(Gate(min_cosine=0.98)), q
    assert q.min_cosine is not None and q.min_cosine < 0.9999  # int8 outputs, not the original's
