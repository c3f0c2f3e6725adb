"""Validation of the ``[autoscale]`` table and of traces; unserved jobs in the simulator."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from tenfold.autoscale.alerts import AlertRule, Severity
from tenfold.autoscale.config import (
    AutoscaleConfig,
    ConfigError,
    LocalConfig,
    SimulateConfig,
    config_from_dict,
    load_config,
)
from tenfold.autoscale.observation import Comparison, Metric
from tenfold.autoscale.rules import ScaleRule, ScalingConfig
from tenfold.autoscale.service import ServiceModel
from tenfold.autoscale.simulate import simulate
from tenfold.autoscale.traces import Trace, TraceError, load_trace

RULE = {
    "name": "up",
    "metric": "depth",
    "comparison": ">",
    "threshold": 100,
    "sustained_for_s": 120,
    "step": 2,
}
ALERT = {
    "name": "slow",
    "severity": "warning",
    "metric": "avg_wait_s",
    "comparison": ">",
    "threshold": 30,
    "for_s": 60,
    "summary": "slow",
}
NAN, INF = math.nan, math.inf


def with_rule(**over: Any) -> dict[str, Any]:
    return {"rules": [{**RULE, **over}]}


def with_alert(**over: Any) -> dict[str, Any]:
    return {"alerts": [{**ALERT, **over}]}


# (table, key named in the error, value as the error shows it)
BAD = [
    *(
        pytest.param(with_rule(step=v), "step", repr(v), id=f"step={v!r}")
        for v in (1.5, 2.0, "2", True)
    ),
    *(
        pytest.param(with_rule(threshold=v), "threshold", repr(v), id=f"threshold={v!r}")
        for v in ("100", NAN, INF, -INF, True, None)
    ),
    *(
        pytest.param(with_rule(sustained_for_s=v), "sustained_for_s", repr(v), id=f"window={v!r}")
        for v in (NAN, INF, "120", False, -1)
    ),
    *(
        pytest.param(with_rule(cooldown_s=v), "cooldown_s", repr(v), id=f"cooldown={v!r}")
        for v in (NAN, INF, "30")
    ),
    *(
        pytest.param({"min_workers": v}, "min_workers", repr(v), id=f"min_workers={v!r}")
        for v in (2.5, 2.0, "2", True)
    ),
    *(
        pytest.param({"max_workers": v}, "max_workers", repr(v), id=f"max_workers={v!r}")
        for v in (50.5, "50", True)
    ),
    *(
        pytest.param(with_alert(threshold=v), "threshold", repr(v), id=f"alert threshold={v!r}")
        for v in ("30", NAN, INF, True)
    ),
    *(
        pytest.param(with_alert(for_s=v), "for_s", repr(v), id=f"alert for_s={v!r}")
        for v in (NAN, INF, "60")
    ),
    pytest.param(
        {"local": {"worker_argv": "python -m tenfold.queue.cli worker m:M"}},
        "worker_argv",
        "'python -m tenfold.queue.cli worker m:M'",
        id="worker_argv as a string",
    ),
    pytest.param(
        {"local": {"worker_argv": ["python", 3]}},
        "worker_argv",
        "('python', 3)",
        id="worker_argv with a number",
    ),
    pytest.param({"local": {"grace_s": INF}}, "grace_s", "inf", id="grace_s=inf"),
    pytest.param({"tick_s": NAN}, "tick_s", "nan", id="tick_s=nan"),
    pytest.param({"tick_s": "5"}, "tick_s", "'5'", id="tick_s='5'"),
    pytest.param({"simulate": {"batch_size": 32.5}}, "batch_size", "32.5", id="batch_size=32.5"),
    pytest.param({"simulate": {"slo_wait_s": NAN}}, "slo_wait_s", "nan", id="slo_wait_s=nan"),
    pytest.param(
        {"simulate": {"worker_hour_price": INF}}, "worker_hour_price", "inf", id="price=inf"
    ),
    pytest.param({"deploy": {"api_port": "8000"}}, "api_port", "'8000'", id="api_port='8000'"),
    pytest.param({"rules": RULE}, "autoscale.rules", "{", id="rules not an array"),
]


@pytest.mark.parametrize(("table", "key", "shown"), BAD)
def test_bad_values_are_refused_at_load_naming_key_and_value(
    table: dict[str, Any], key: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(table)
    message = str(info.value)
    assert key in message and shown in message, message


def test_nan_and_inf_from_a_toml_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tenfold.toml"
    rule = "\n".join(f"{k} = {v!r}" for k, v in RULE.items() if k != "sustained_for_s")
    for bad in ("nan", "inf"):
        path.write_text(f"[[autoscale.rules]]\n{rule}\nsustained_for_s = {bad}\n".replace("'", '"'))
        with pytest.raises(
            ConfigError, match=f"sustained_for_s must be a finite number, got {bad}"
        ):
            load_config(path)


def test_good_values_still_load() -> None:
    cfg = config_from_dict(
        {
            **with_rule(threshold=99.5, sustained_for_s=90, cooldown_s=30.0, step=-1),
            "min_workers": 0,
            "max_workers": 3,
            "tick_s": 2,
            "local": {"worker_argv": ["python", "-m", "w"], "grace_s": 5},
            "simulate": {"worker_startup_s": 0, "worker_hour_price": 1.25},
        }
    )
    assert cfg.scaling.rules[0].threshold == 99.5 and cfg.scaling.rules[0].step == -1
    assert cfg.local.worker_argv == ("python", "-m", "w")
    assert (cfg.scaling.min_workers, cfg.scaling.max_workers, cfg.tick_s) == (0, 3, 2)


def test_the_dataclasses_check_types_too() -> None:
    """Built in code rather than from TOML: the same checks, as ValueError."""
    with pytest.raises(ValueError, match=re.escape("step must be an integer, got 1.5")):
        ScaleRule("x", Metric.DEPTH, Comparison.GT, 1, 1, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sustained_for_s must be a finite number, got nan"):
        ScaleRule("x", Metric.DEPTH, Comparison.GT, 1, NAN, 1)
    with pytest.raises(ValueError, match="min_workers must be an integer, got True"):
        ScalingConfig(min_workers=True)
    with pytest.raises(ValueError, match="threshold must be a finite number, got '5'"):
        AlertRule("a", Severity.WARNING, Metric.DEPTH, Comparison.GT, "5", 0, "s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="worker_argv must be a list of strings"):
        LocalConfig(worker_argv="python -m w")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait_window_s must be a finite number, got inf"):
        SimulateConfig(wait_window_s=INF)
    with pytest.raises(ValueError, match="tick_s must be a finite number, got nan"):
        AutoscaleConfig(tick_s=NAN)


# Traces: every t_s and qps must be a finite number (qps >= 0); the error gives the line.
BAD_ROWS = [
    pytest.param("inf,5", "t_s", id="t_s=inf"),
    pytest.param("nan,5", "t_s", id="t_s=nan"),
    pytest.param("60,5\ninf,0", "t_s", id="t_s=inf on the last row"),
    pytest.param("60,nan", "qps", id="qps=nan"),
    pytest.param("60,inf", "qps", id="qps=inf"),
    pytest.param("60,-1", "qps", id="qps<0"),
]


@pytest.mark.parametrize(("rows", "key"), BAD_ROWS)
def test_trace_rows_must_be_finite(tmp_path: Path, rows: str, key: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"t_s,qps\n0,10\n{rows}\n3600,0\n")
    with pytest.raises(TraceError, match=rf"t\.csv:\d+: {key} must be finite"):
        load_trace(path)


@pytest.mark.parametrize("times", [(0.0, 60.0, INF), (0.0, NAN, 60.0)], ids=["inf", "nan"])
def test_trace_times_must_be_finite(times: tuple[float, ...]) -> None:
    with pytest.raises(TraceError, match="t_s must be finite"):
        Trace(times, (1.0, 1.0, 0.0))


# The simulator: jobs still queued at the end count in the waits with their age then.
ONE_WORKER = AutoscaleConfig(
    scaling=ScalingConfig(rules=(), min_workers=1, max_workers=1),
    simulate=SimulateConfig(worker_startup_s=0),
)


def test_jobs_left_queued_count_in_the_waits_with_their_age_at_the_end() -> None:
    # No worker at all: 5 jobs/s for 300 s, none served. Their ages at the end (t = 300)
    # are 300 - a for arrival seconds a = 0..299: 1..300 s, five jobs each.
    dead = AutoscaleConfig(
        scaling=ScalingConfig(rules=(), min_workers=0, max_workers=1),
        simulate=SimulateConfig(worker_startup_s=0),
    )
    s = simulate(Trace((0.0, 300.0), (5.0, 0.0)), ServiceModel.constant(10.0), dead).summary
    assert (s.jobs_arrived, s.jobs_served, s.jobs_left_queued) == (1500, 0, 1500)
    assert (s.wait_p50_s, s.wait_p99_s, s.wait_max_s) == (150.0, 297.0, 300.0)


def test_a_backlog_left_at_the_end_raises_the_median() -> None:
    # One worker at 10/s: 600 jobs at 10 qps served at once, then 100 qps for 60 s of
    # which 600 are served and 5,400 are left queued, aged up to 54 s: most jobs wait.
    trace = Trace((0.0, 60.0, 120.0), (10.0, 100.0, 0.0))
    s = simulate(trace, ServiceModel.constant(10.0), ONE_WORKER).summary
    assert (s.jobs_arrived, s.jobs_served, s.jobs_left_queued) == (6600, 1200, 5400)
    assert s.wait_p50_s == 25.0  # 0 when only the 1,200 served jobs counted
    assert s.wait_max_s == 54.0


def test_everything_served_leaves_the_waits_as_they_were() -> None:
    trace = Trace((0.0, 600.0), (8.0, 0.0))
    s = simulate(trace, ServiceModel.constant(10.0), ONE_WORKER).summary
    assert s.jobs_left_queued == 0 and s.jobs_served == 4800
    assert (s.wait_p50_s, s.wait_p99_s, s.wait_max_s) == (0.0, 0.0, 0.0)
