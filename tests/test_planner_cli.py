"""``tenfold plan`` through its typer app (in process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tenfold.planner.cli import app
from tenfold.planner.profile import Profile, ProfilePoint, save_profile

runner = CliRunner()


@pytest.fixture
def seed_profile(tmp_path: Path) -> Path:
    curve = ((1, 100.0), (8, 364.0), (32, 582.0), (64, 640.0))
    path = tmp_path / "profile.json"
    save_profile(
        Profile(
            "seed",
            "1",
            "NVIDIA A10G",
            tuple(ProfilePoint(b, b / t * 1000, b / t * 1200, t) for b, t in curve),
            weights_bytes=90_000_000,
        ),
        path,
    )
    return path


def _plan(profile: Path, args: str, **kwargs: Any) -> Result:
    """``tenfold plan --profile PROFILE ARGS`` (ARGS split on spaces)."""
    return runner.invoke(app, ["plan", "--profile", str(profile), *args.split()], **kwargs)


def _json(profile: Path, args: str) -> dict[str, Any]:
    result = _plan(profile, args)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_plan_json(seed_profile: Path) -> None:
    doc = _json(seed_profile, "--qps 1000 --p99-ms 100 --cache-hit-rate 0.4 --gpu a10g --json")
    assert doc["replicas"] == 3 and doc["batch_size"] == 8
    assert doc["monthly_cost_usd"] == pytest.approx(3 * 1.006 * 720)
    assert doc["cost_per_1k_requests_usd"] == pytest.approx(3 * 1.006 / 3600)
    assert doc["predicted_p99_ms"] <= 100
    assert doc["prices_as_of"] and doc["speed_factor"] == 1
    labels = [r["label"] for r in doc["comparisons"]]
    assert labels == ["no batching", "no cache", "no batching, no cache"]
    assert doc["memory"]["fits"] is True
    assert "scales" not in doc


def test_plan_spot_and_scales(seed_profile: Path) -> None:
    doc = _json(seed_profile, "--qps 1000 --p99-ms 150 --gpu a10g --spot --scales --json")
    assert doc["price_per_hour_usd"] == 0.45
    assert [r["qps"] for r in doc["scales"]] == [10, 100, 1000, 10000, 100000]


def test_plan_prices_a_fixed_fleet(seed_profile: Path) -> None:
    doc = _json(
        seed_profile, "--qps 100000 --p99-ms 1000 --replicas 200 --price-per-hour 0.5 --json"
    )
    assert doc["replicas"] == 200
    assert doc["monthly_cost_usd"] == pytest.approx(72_000)
    assert any("command line" in n for n in doc["notes"])


def test_plan_on_another_gpu_scales_the_profile(seed_profile: Path) -> None:
    a10g = _json(seed_profile, "--qps 10000 --p99-ms 150 --json")
    h100 = _json(seed_profile, "--qps 10000 --p99-ms 150 --gpu h100 --json")
    assert h100["speed_factor"] == pytest.approx(4.0)
    assert h100["replicas"] < a10g["replicas"]


def test_plan_infeasible_budget_json(seed_profile: Path) -> None:
    result = _plan(seed_profile, "--qps 1000 --p99-ms 5 --json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["min_p99_ms"] == pytest.approx(15.0)  # 12 ms + 3 ms serving overhead
    assert "minimum achievable p99 is 15.0 ms" in doc["error"]


def test_plan_infeasible_budget_human(seed_profile: Path) -> None:
    result = _plan(seed_profile, "--qps 1000 --p99-ms 5")
    assert result.exit_code == 1
    assert "minimum achievable p99 is 15.0 ms" in " ".join(result.output.split())


def test_plan_human_output(seed_profile: Path) -> None:
    result = _plan(
        seed_profile,
        "--qps 1000 --p99-ms 100 --cache-hit-rate 0.4 --scales",
        env={"COLUMNS": "200"},  # wide enough that rich does not abbreviate table cells
    )
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "$1.006/hour" in out and "prices as of" in out and "a month = 720 h" in out
    assert "batch size 8, timeout 35.0 ms, 3 replica(s)" in out
    assert "no batching" in out and "Scale ladder" in out and "per 1K" in out


def test_plan_memory_advice_from_the_command_line(seed_profile: Path) -> None:
    doc = _json(seed_profile, "--qps 100 --p99-ms 100 --weights-gib 30 --json")
    assert doc["memory"]["fits"] is False
    assert doc["memory"]["tensor_parallel_degree"] == 2
    assert "a100-40gb" in doc["memory"]["bigger_gpus"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--qps 10 --p99-ms 100 --gpu tpu", "unknown GPU 'tpu'"),
        ("--p99-ms 100", "give --qps, or --scales"),
        ("--qps 10 --p99-ms 100 --cache-hit-rate 2", "cache hit rate"),
        ("--qps 1000 --p99-ms 100 --replicas 1", "1 replicas cannot carry"),
        ("--qps 0 --p99-ms 1", "the minimum achievable p99 is 15.0 ms"),
        ("--qps 10 --p99-ms inf --json", "p99 budget must be a finite number > 0 ms, got inf"),
        ("--qps 10 --p99-ms 100 --price-per-hour inf --json", "price per hour must be a finite"),
        ("--qps 10 --p99-ms 100 --weights-gib nan", "--weights-gib must be a finite number"),
        (
            "--qps 10 --p99-ms 100 --activation-mib-per-item -1",
            "--activation-mib-per-item must be a finite number >= 0, got -1",
        ),
    ],
)
def test_plan_errors(seed_profile: Path, args: str, message: str) -> None:
    result = _plan(seed_profile, args)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output  # one line, unwrapped


def test_plan_zero_qps_budget_below_compute_json(seed_profile: Path) -> None:
    result = _plan(seed_profile, "--qps 0 --p99-ms 1 --json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["min_p99_ms"] == pytest.approx(15.0)


def test_plan_scaled_to_zero_predicts_no_p99(seed_profile: Path) -> None:
    doc = _json(seed_profile, "--qps 0 --p99-ms 100 --min-replicas 0 --json")
    assert doc["replicas"] == 0 and doc["monthly_cost_usd"] == 0
    assert doc["predicted_p99_ms"] is None
    assert any("cold start" in n or "waits for one to start" in n for n in doc["notes"])
    human = _plan(seed_profile, "--qps 0 --p99-ms 100 --min-replicas 0", env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.output
    assert "predicted p99 n/a (no replica: cold start)" in " ".join(human.output.split())


def test_profile_checks_the_output_path_before_profiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiled: list[str] = []
    monkeypatch.setattr(
        "tenfold.planner.cli.run_profile", lambda target, **_: profiled.append(target)
    )
    out = tmp_path / "missing" / "p.json"
    result = runner.invoke(app, ["profile", "--example", "classify", "--out", str(out)])
    assert result.exit_code == 1
    assert profiled == []  # failed before the sweep, not after it
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"--out {out}: directory" in errors[0], result.output
    png = runner.invoke(app, ["profile", "--example", "classify", "--png", str(tmp_path)])
    assert png.exit_code == 1 and profiled == []
    assert "is a directory" in png.output


def test_plan_with_a_bad_profile(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"model": "m"}')
    result = _plan(bad, "--qps 1 --p99-ms 9")
    assert result.exit_code == 1
    assert "invalid profile" in result.output and "points" in result.output


def test_public_surface_and_no_heavy_imports() -> None:
    import subprocess
    import sys

    import tenfold.planner

    for name in tenfold.planner.__all__:
        assert hasattr(tenfold.planner, name), name
    # Importing the CLI must not pay for matplotlib, scikit-learn or torch.
    code = (
        "import sys, tenfold.planner.cli; "
        "print(sorted(m for m in ('matplotlib', 'sklearn', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    assert out.stdout.strip() == "[]"
