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
        "lag > 100 ? 200 : (lag == 0 ? 0 : 100)"
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
