"""The profiler: pure summaries, and end to end in a real worker process."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenfold.planner.cli import app
from tenfold.planner.profile import load_profile
from tenfold.planner.profiler import (
    EventKind,
    ProfileEvent,
    ProfilerError,
    calibration_inputs,
    parse_batch_sizes,
    percentile,
    run_profile,
    summarize,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 99, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 100, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 99, 4.96),
        ([5.0, 1.0], 50, 3.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_summarize() -> None:
    p = summarize(8, [0.010] * 98 + [0.020, 0.030], wall_s=1.25)
    assert p.batch_size == 8
    assert p.latency_p50_ms == pytest.approx(10.0)
    assert p.latency_p99_ms == pytest.approx(20.1)
    assert p.items_per_s == pytest.approx(800 / 1.03)  # items / time in predict
    assert p.busy_fraction == pytest.approx(1.03 / 1.25, abs=1e-4)
    assert summarize(8, [0.01], wall_s=1, gpu_utilization=0.42).busy_fraction == 0.42


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,2,4", (1, 2, 4)), ("64, 8,1,8", (1, 8, 64)), ("16", (16,))],
)
def test_parse_batch_sizes(text: str, expected: tuple[int, ...]) -> None:
    assert parse_batch_sizes(text) == expected


@pytest.mark.parametrize("text", ["", "0,1", "1,two", "-4"])
def test_parse_batch_sizes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="batch sizes"):
        parse_batch_sizes(text)


def test_calibration_inputs() -> None:
    sentences = calibration_inputs("embed", 50, 0, None)
    assert len(set(sentences)) == 50 and all(isinstance(s, str) for s in sentences)
    flowers = calibration_inputs("classify", 10, 0, None)
    assert len(flowers) == 150 and set(flowers[0]) == {
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    }
    with pytest.raises(ValueError, match=r"pass --inputs FILE\.jsonl"):
        calibration_inputs("mine", 10, 0, None)


def test_calibration_inputs_from_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('"a"\n\n{"x": 1}\n')
    assert calibration_inputs("mine", 10, 0, str(path)) == ["a", {"x": 1}]
    path.write_text('"a"\n{oops\n')
    with pytest.raises(ValueError, match=r"in\.jsonl:2: not valid JSON"):
        calibration_inputs("mine", 10, 0, str(path))


@pytest.mark.slow
def test_profile_classify_end_to_end(tmp_path: Path) -> None:
    events: list[ProfileEvent] = []
    profile = run_profile(
        "classify", batch_sizes=[1, 4, 32], seconds=0.2, min_batches=3, on_event=events.append
    )
    assert (profile.model, profile.version) == ("classify", "iris-logreg-1")
    assert profile.device.startswith("cpu: ")
    assert profile.utilization_source == "busy_time"
    assert [p.batch_size for p in profile.points] == [1, 4, 32]
    for p in profile.points:
        assert 0 < p.latency_p50_ms <= p.latency_p99_ms
        assert p.busy_fraction is not None and 0 < p.busy_fraction <= 1
        assert p.memory_bytes is not None and p.memory_bytes > 10_000_000
    # sklearn's per-call overhead dominates a 4-feature logistic regression: batching pays.
    assert profile.points[-1].items_per_s > 3 * profile.points[0].items_per_s
    kinds = [e.kind for e in events]
    assert kinds[0] is EventKind.LOADING and EventKind.LOADED in kinds
    assert [e.batch_size for e in events if e.kind is EventKind.POINT] == [1, 4, 32]


@pytest.mark.slow
def test_profile_cli_writes_json_png_and_table(tmp_path: Path) -> None:
    out, png = tmp_path / "profile.json", tmp_path / "profile.png"
    result = CliRunner().invoke(
        app,
        [
            "profile",
            "--example",
            "classify",
            "--batch-sizes",
            "1,16",
            "--seconds",
            "0.2",
            "--out",
            str(out),
            "--png",
            str(png),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    assert [p.batch_size for p in profile.points] == [1, 16]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "classify (iris-logreg-1) on cpu" in result.output
    assert "$ per 1K req" in result.output and "$1.006/hour" in result.output


USER_MODELS = textwrap.dedent(
    """
    import os
    from tenfold.model import Model

    class Shout(Model[str, str]):
        name = "shout"

        def predict(self, batch):
            return [s.upper() for s in batch]

    class Crash(Model[str, str]):
        name = "crash"

        def predict(self, batch):
            os._exit(3)

    class Short(Model[str, str]):
        name = "short"

        def predict(self, batch):
            return batch[:-1]
    """
)


@pytest.mark.slow
def test_user_model_with_inputs_and_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "usermodels.py").write_text(USER_MODELS)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("\n".join(json.dumps(f"sentence {i}") for i in range(5)))
    monkeypatch.chdir(tmp_path)  # the worker imports user models from the working directory

    profile = run_profile("usermodels:Shout", batch_sizes=[2, 8], seconds=0.05, inputs_path=inputs)
    assert profile.model == "shout" and len(profile.points) == 2

    with pytest.raises(ProfilerError, match="exited with code 3"):
        run_profile("usermodels:Crash", batch_sizes=[1], seconds=0.05, inputs_path=inputs)
    with pytest.raises(ProfilerError, match="predict returned 3 outputs for a batch of 4"):
        run_profile("usermodels:Short", batch_sizes=[4], seconds=0.05, inputs_path=inputs)
    with pytest.raises(ProfilerError, match=r"pass --inputs FILE\.jsonl"):
        run_profile("usermodels:Shout", batch_sizes=[1], seconds=0.05)
