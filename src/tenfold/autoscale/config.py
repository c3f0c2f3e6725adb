"""One config object for the scaler, the alerts, the Kubernetes export and the simulator.

Read from the ``[autoscale]`` table of ``tenfold.toml`` (other tables belong to other
parts of tenfold and are ignored); everything has a default, and the defaults are the
seed rules. Unknown keys are errors, so a typo cannot silently fall back to a default::

    [autoscale]
    min_workers = 2
    max_workers = 50
    tick_s = 5

    [[autoscale.rules]]          # giving any rule replaces the seed rules
    name = "queue_backlog"
    metric = "depth"             # depth | oldest_age_s | avg_wait_s | workers
    comparison = ">"             # > >= < <= ==
    threshold = 100
    sustained_for_s = 120
    step = 2

    [[autoscale.alerts]]         # giving any alert replaces the seed alerts
    name = "queue_stalled"
    severity = "critical"
    metric = "oldest_age_s"
    comparison = ">"
    threshold = 120
    for_s = 0
    summary = "Oldest queued job waited over 2 min"

    [autoscale.queue]            # what the workers consume (KEDA reads its lag)
    url = "redis://redis:6379/0"
    model = "embed"              # stream tenfold:stream:embed, consumer group "workers"

    [autoscale.local]            # the local scaler (tenfold autoscale)
    worker_argv = ["python", "-m", "tenfold.queue.cli", "worker", "mymod:MyModel",
                   "--queue", "sqlite:///var/tenfold/queue.db"]
    grace_s = 60

    [autoscale.deploy]           # Kubernetes export
    image = "tenfold:latest"
    target = "tenfold.examples.embed:Embed"

    [autoscale.simulate]
    batch_size = 32
    worker_startup_s = 60
    slo_wait_s = 120
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from tenfold.autoscale.alerts import SEED_ALERTS, AlertRule, Severity
from tenfold.autoscale.observation import Comparison, Metric
from tenfold.autoscale.rules import ScaleRule, ScalingConfig, require_int, require_real


@dataclass(frozen=True, slots=True)
class QueueTarget:
    """The queue the workers consume: one model's stream on the queue at ``url``.

    Key names follow :mod:`tenfold.queue.redis_streams`: the stream is
    ``{prefix}:stream:{model}``, read by the consumer group ``workers``.
    """

    url: str = "redis://redis:6379/0"
    model: str = "embed"
    prefix: str = "tenfold"
    group: str = "workers"

    @property
    def stream(self) -> str:
        return f"{self.prefix}:stream:{self.model}"


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """The local scaler: how to start one worker process, and how long it may drain."""

    worker_argv: tuple[str, ...] = ()
    """Command of one worker; empty: ``python -m tenfold.queue.cli worker TARGET --queue URL``."""
    grace_s: float = 60.0
    """After SIGTERM a worker has this long to finish or release its batch; then SIGKILL."""

    def __post_init__(self) -> None:
        argv = self.worker_argv
        if not isinstance(argv, tuple) or not all(isinstance(a, str) for a in argv):
            raise ValueError(
                f"local.worker_argv must be a list of strings (one per argument), got {argv!r}"
            )
        require_real(self.grace_s, "local.grace_s")
        if self.grace_s <= 0:
            raise ValueError(f"local.grace_s must be > 0, got {self.grace_s!r}")


@dataclass(frozen=True, slots=True)
class DeployConfig:
    name: str = "tenfold"
    namespace: str = "default"
    image: str = "tenfold:latest"
    target: str = "tenfold.examples.embed:Embed"
    """``MODULE:CLASS`` the API serves and the workers run."""
    api_replicas: int = 2
    api_port: int = 8000
    worker_cpu: str = "1"
    worker_memory: str = "2Gi"
    worker_gpus: int = 0
    worker_grace_period_s: int = 120
    """Pod terminationGracePeriodSeconds: time a worker has to finish its batch on SIGTERM."""
    polling_interval_s: int = 15
    """How often KEDA reads the stream lag."""
    api_keys_secret: str = ""
    """Turn the API's auth on (``tenfold.server.auth``): the name of a Secret whose key
    ``keys`` holds the API keys (comma-separated, ``TENFOLD_API_KEYS``) and ``metrics-key``
    the one Prometheus scrapes ``/metrics`` with. Empty: auth off."""

    def __post_init__(self) -> None:
        for key in (
            "api_replicas",
            "api_port",
            "worker_gpus",
            "worker_grace_period_s",
            "polling_interval_s",
        ):
            require_int(getattr(self, key), f"deploy.{key}")
        if not isinstance(self.api_keys_secret, str):
            raise ValueError("deploy.api_keys_secret must be a Secret name (a string)")
        if not isinstance(self.target, str) or ":" not in self.target:
            raise ValueError(f"deploy.target must be MODULE:CLASS, got {self.target!r}")
        if self.api_replicas < 1 or self.worker_gpus < 0 or self.worker_grace_period_s < 1:
            raise ValueError("deploy: api_replicas >= 1, worker_gpus >= 0, grace period >= 1 s")


@dataclass(frozen=True, slots=True)
class SimulateConfig:
    batch_size: int = 32
    """Batch size whose profile point gives the per-worker throughput."""
    worker_startup_s: float = 60.0
    """Seconds from start to first claimed batch (container start plus model load)."""
    slo_wait_s: float = 120.0
    wait_window_s: float = 60.0
    """Window of the ``avg_wait_s`` mean, as a queue backend reports it."""
    worker_hour_price: float = 0.0
    """Optional price per worker-hour for dollar figures in the summary (0: hours only)."""

    def __post_init__(self) -> None:
        require_int(self.batch_size, "simulate.batch_size")
        for key in ("worker_startup_s", "slo_wait_s", "wait_window_s", "worker_hour_price"):
            require_real(getattr(self, key), f"simulate.{key}")
        if self.batch_size < 1 or self.worker_startup_s < 0 or self.slo_wait_s <= 0:
            raise ValueError("simulate: batch_size >= 1, worker_startup_s >= 0, slo_wait_s > 0")
        if self.wait_window_s <= 0:
            raise ValueError("simulate: wait_window_s must be > 0")


@dataclass(frozen=True, slots=True)
class AutoscaleConfig:
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    alerts: tuple[AlertRule, ...] = SEED_ALERTS
    tick_s: float = 5.0
    """How often the local scaler samples the queue and decides."""
    alert_webhook_url: str | None = None
    queue: QueueTarget = field(default_factory=QueueTarget)
    local: LocalConfig = field(default_factory=LocalConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)

    def __post_init__(self) -> None:
        require_real(self.tick_s, "tick_s")
        if self.tick_s <= 0:
            raise ValueError(f"tick_s must be > 0, got {self.tick_s!r}")
        if self.alert_webhook_url is not None and not isinstance(self.alert_webhook_url, str):
            raise ValueError(f"alert_webhook_url must be a string, got {self.alert_webhook_url!r}")


class ConfigError(ValueError):
    """The ``[autoscale]`` table is invalid; the message names the key."""


T = TypeVar("T")


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _with_enums(data: Any, where: str, enums: Mapping[str, type[Enum]]) -> dict[str, Any]:
    """``data`` (a TOML table) with the named fields turned into their enums."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    try:
        return {**data, **{key: enum(data[key]) for key, enum in enums.items()}}
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: bad or missing {'/'.join(enums)} ({exc})") from exc


def _array(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise ConfigError(f"{where} must be an array of tables ([[{where}]]), got {data!r}")
    return data


def _rule(data: Any, where: str) -> ScaleRule:
    enums = {"metric": Metric, "comparison": Comparison}
    return _build(ScaleRule, _with_enums(data, where, enums), where)


def _alert(data: Any, where: str) -> AlertRule:
    enums = {"metric": Metric, "comparison": Comparison, "severity": Severity}
    return _build(AlertRule, _with_enums(data, where, enums), where)


def config_from_dict(table: dict[str, Any]) -> AutoscaleConfig:
    """Build from the ``[autoscale]`` table (already parsed)."""
    data = dict(table)
    scaling_kwargs: dict[str, Any] = {
        k: data.pop(k) for k in ("min_workers", "max_workers") if k in data
    }
    rules_data = data.pop("rules", None)
    if rules_data is not None:
        scaling_kwargs["rules"] = tuple(
            _rule(r, f"autoscale.rules[{i}]")
            for i, r in enumerate(_array(rules_data, "autoscale.rules"))
        )
    kwargs: dict[str, Any] = {"scaling": _build(ScalingConfig, scaling_kwargs, "autoscale")}
    alerts_data = data.pop("alerts", None)
    if alerts_data is not None:
        kwargs["alerts"] = tuple(
            _alert(a, f"autoscale.alerts[{i}]")
            for i, a in enumerate(_array(alerts_data, "autoscale.alerts"))
        )
    sections: tuple[tuple[str, type[Any]], ...] = (
        ("queue", QueueTarget),
        ("local", LocalConfig),
        ("deploy", DeployConfig),
        ("simulate", SimulateConfig),
    )
    for key, cls in sections:
        if key in data:
            section = data.pop(key)
            if key == "local" and isinstance(section, dict):
                argv = section.get("worker_argv")
                if isinstance(argv, list):  # TOML arrays are lists; LocalConfig checks the rest
                    section = {**section, "worker_argv": tuple(argv)}
            kwargs[key] = _build(cls, section, f"autoscale.{key}")
    for key in ("tick_s", "alert_webhook_url"):
        if key in data:
            kwargs[key] = data.pop(key)
    if data:
        raise ConfigError(f"autoscale: unknown key(s) {sorted(data)}")
    try:
        return AutoscaleConfig(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"autoscale: {exc}") from exc


def load_config(path: str | Path | None) -> AutoscaleConfig:
    """Read ``[autoscale]`` from a TOML file; ``None`` gives the defaults (the seed rules)."""
    if path is None:
        return AutoscaleConfig()
    with open(path, "rb") as fh:
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return config_from_dict(doc.get("autoscale", {}))
