from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tenfold.autoscale.cli import app

runner = CliRunner()


def test_deploy_k8s_defaults(tmp_path: Path) -> None:
    result = runner.invoke(app, ["deploy", "k8s", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    so = yaml.safe_load((tmp_path / "worker-scaledobject.yaml").read_text())
    assert so["spec"]["advanced"]["scalingModifiers"]["formula"] == (
        "lag > 100 ? 5200 : (lag == 0 ? 0 : 100)"
    )


def test_deploy_k8s_refuses_a_sqlite_queue(tmp_path: Path) -> None:
    cfg = tmp_path / "tenfold.toml"
    cfg.write_text('[autoscale.queue]\nurl = "sqlite:///q.db"\n')
    result = runner.invoke(app, ["deploy", "k8s", "--config", str(cfg), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "redis" in result.output


def test_simulate_bundled_trace(tmp_path: Path) -> None:
    cfg = tmp_path / "tenfold.toml"
    cfg.write_text("[autoscale]\ntick_s = 5\n[autoscale.simulate]\nslo_wait_s = 60\n")
    args = ["simulate", "--trace", "steady", "--worker-rps", "15", "--config", str(cfg)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--no-plot"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["slo_wait_s"] == 60 and summary["jobs_arrived"] == 20 * 3600
    assert summary["static_peak_workers"] == 2 and summary["wait_p99_s"] == 0


def test_simulate_needs_exactly_one_service_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--trace", "steady", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one" in result.output


def test_standalone_workers_serve_the_watched_queue() -> None:
    """``tenfold autoscale --model NAME``: its workers serve NAME's queue, not the target
    model's own name, and their grace ends inside the supervisor's."""
    from tenfold.autoscale.cli import standalone_worker_argv
    from tenfold.autoscale.config import AutoscaleConfig

    argv = standalone_worker_argv("classify", "sqlite:///q.db", "iris", AutoscaleConfig())
    assert argv[argv.index("--queue-name") + 1] == "iris"
    assert argv[argv.index("--grace-s") + 1] == "50"  # the supervisor kills after 60 s


def test_simulate_refuses_a_fractional_step_at_load(tmp_path: Path) -> None:
    cfg = tmp_path / "tenfold.toml"
    cfg.write_text(
        '[[autoscale.rules]]\nname = "up"\nmetric = "depth"\ncomparison = ">"\n'
        "threshold = 1\nsustained_for_s = 0\nstep = 1.5\n"
    )
    args = ["simulate", "--trace", "steady", "--worker-rps", "1", "--config", str(cfg)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--no-plot"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "config error" in output and "step must be an integer, got 1.5" in output


def test_simulate_refuses_a_trace_that_ends_at_infinity(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("t_s,qps\n0,10\ninf,0\n")
    args = ["simulate", "--trace", str(trace), "--worker-rps", "15", "--no-plot"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "t_s must be finite, got 'inf'" in output


def test_deploy_k8s_with_a_password_says_which_secret_to_create(tmp_path: Path) -> None:
    cfg = tmp_path / "tenfold.toml"
    cfg.write_text('[autoscale.queue]\nurl = "redis://app:s3cret@redis:6379/0"\n')
    result = runner.invoke(app, ["deploy", "k8s", "--config", str(cfg), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "kubectl create secret generic tenfold-queue" in result.output
    assert "s3cret" not in result.output
