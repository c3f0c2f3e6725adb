from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenfold.autoscale.config import (
    AutoscaleConfig,
    ConfigError,
    QueueTarget,
    config_from_dict,
    load_config,
)
from tenfold.autoscale.k8s import ExportError, export, keda_mapping
from tenfold.autoscale.observation import Comparison, Metric, QueueObservation
from tenfold.autoscale.policy import RulePolicy
from tenfold.autoscale.rules import ScaleRule, ScalingConfig


def load_dir(out: Path) -> dict[str, Any]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))}


def test_default_export_is_the_notes_mapping(tmp_path: Path) -> None:
    export(AutoscaleConfig(), tmp_path)
    docs = load_dir(tmp_path)
    assert set(docs) == {
        "api-deployment.yaml",
        "api-service.yaml",
        "worker-deployment.yaml",
        "worker-scaledobject.yaml",
        "prometheusrule.yaml",
        "podmonitor.yaml",
        "alert-rules.yaml",
    }
    monitor = docs["podmonitor.yaml"]
    assert monitor["kind"] == "PodMonitor"
    selector = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    for name, port in (("api-deployment.yaml", "http"), ("worker-deployment.yaml", "metrics")):
        template = docs[name]["spec"]["template"]
        assert selector.items() <= template["metadata"]["labels"].items()
        assert port in ports
        assert port in {p["name"] for p in template["spec"]["containers"][0]["ports"]}
    so = docs["worker-scaledobject.yaml"]
    assert so["apiVersion"] == "keda.sh/v1alpha1" and so["kind"] == "ScaledObject"
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"name": "tenfold-worker"}
    assert spec["minReplicaCount"] == 2 and spec["maxReplicaCount"] == 50
    assert "cooldownPeriod" not in spec  # it only governs scaling to/from zero
    assert spec["advanced"]["scalingModifiers"] == {
        "formula": "lag > 100 ? 5200 : (lag == 0 ? 0 : 100)",
        "target": "100",
        "metricType": "Value",
    }
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 120
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 120}]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 600}]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis-streams" and trigger["name"] == "lag"
    assert trigger["metadata"] == {
        "address": "redis:6379",
        "stream": "tenfold:stream:embed",
        "consumerGroup": "workers",
        "lagCount": "100",
        "databaseIndex": "0",
    }
    assert "pendingEntriesCount" not in trigger["metadata"]

    worker = docs["worker-deployment.yaml"]
    assert worker["metadata"]["name"] == "tenfold-worker"
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 120
    assert pod["containers"][0]["args"][:3] == ["tenfold", "worker", "tenfold.examples.embed:Embed"]
    assert (
        worker["spec"]["selector"]["matchLabels"]
        == worker["spec"]["template"]["metadata"]["labels"]
    )

    api = docs["api-deployment.yaml"]
    svc = docs["api-service.yaml"]
    assert svc["spec"]["selector"] == api["spec"]["template"]["metadata"]["labels"]
    assert (
        api["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
        == "/readyz"
    )

    rule = docs["prometheusrule.yaml"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"] == docs["alert-rules.yaml"]
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert alerts["TenfoldQueueStalled"]["expr"] == "max(tenfold_queue_oldest_age_seconds) > 120"
    assert "for" not in alerts["TenfoldQueueStalled"]
    assert alerts["TenfoldQueueDepthCritical"] == {
        "alert": "TenfoldQueueDepthCritical",
        "expr": "max(tenfold_queue_depth) > 10000",
        "for": "1m",
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "More than 10,000 jobs queued",
            "tenfold_alert": "queue_depth_critical",
        },
    }
    assert alerts["TenfoldQueueWaitHigh"]["labels"] == {"severity": "warning"}
    assert alerts["TenfoldQueueWaitHigh"]["expr"] == "max(tenfold_queue_wait_avg_seconds) > 30"


def test_export_follows_the_config_file(tmp_path: Path) -> None:
    toml = tmp_path / "tenfold.toml"
    toml.write_text(
        """
[server]
port = 9000  # another part's table: ignored here

[autoscale]
min_workers = 1
max_workers = 8

[[autoscale.rules]]
name = "up"
metric = "depth"
comparison = ">="
threshold = 20
sustained_for_s = 30
step = 3
cooldown_s = 60

[[autoscale.rules]]
name = "down"
metric = "depth"
comparison = "<"
threshold = 5
sustained_for_s = 300
step = -2

[[autoscale.alerts]]
name = "too_deep"
severity = "warning"
metric = "depth"
comparison = ">"
threshold = 1000
for_s = 90
summary = "deep"

[autoscale.queue]
url = "rediss://queue.internal:6380/3"
model = "embed"
prefix = "tf"

[autoscale.deploy]
name = "emb"
namespace = "ml"
worker_gpus = 1
"""
    )
    cfg = load_config(toml)
    export(cfg, tmp_path / "out")
    docs = load_dir(tmp_path / "out")
    spec = docs["worker-scaledobject.yaml"]["spec"]
    # (max 8 + step 3) x 100: one ready pod already asks past the maximum.
    assert (
        spec["advanced"]["scalingModifiers"]["formula"] == "lag >= 20 ? 1100 : (lag < 5 ? 0 : 100)"
    )
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 30
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 3, "periodSeconds": 60}]
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 300}]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 8)
    assert spec["triggers"][0]["metadata"] == {
        "address": "queue.internal:6380",
        "stream": "tf:stream:embed",
        "consumerGroup": "workers",
        "lagCount": "100",
        "databaseIndex": "3",
        "enableTLS": "true",
    }
    worker = docs["worker-deployment.yaml"]
    assert worker["metadata"]["namespace"] == "ml"
    limits = worker["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": 1}
    (alert,) = docs["alert-rules.yaml"]["groups"][0]["rules"]
    assert alert == {
        "alert": "TenfoldTooDeep",
        "expr": "max(tenfold_queue_depth) > 1000",
        "for": "90s",
        "labels": {"severity": "warning"},
        "annotations": {"summary": "deep", "tenfold_alert": "too_deep"},
    }


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ((ScaleRule("w", Metric.AVG_WAIT_S, Comparison.GT, 30, 60, 2),), "avg_wait_s"),
        (
            (
                ScaleRule("a", Metric.DEPTH, Comparison.GT, 10, 60, 1),
                ScaleRule("b", Metric.DEPTH, Comparison.GT, 1000, 60, 5),
            ),
            "exactly one scale-up",
        ),
        (
            (
                ScaleRule("u", Metric.DEPTH, Comparison.GT, 10, 60, 1),
                ScaleRule("d", Metric.DEPTH, Comparison.LT, 50, 60, -1),
            ),
            "overlap",
        ),
        ((ScaleRule("u", Metric.DEPTH, Comparison.GT, 10, 60.5, 1),), "whole seconds"),
    ],
)
def test_rules_keda_cannot_express_are_refused(rules: tuple[ScaleRule, ...], match: str) -> None:
    with pytest.raises(ExportError, match=match):
        keda_mapping(AutoscaleConfig(scaling=ScalingConfig(rules=rules)))


def _args(docs: dict[str, Any], name: str) -> list[str]:
    return list(docs[name]["spec"]["template"]["spec"]["containers"][0]["args"])


def test_processes_use_the_queue_keda_watches(tmp_path: Path) -> None:
    """The workers read the stream KEDA measures (queue name and key prefix), finish their
    batch inside the pod's grace period, and the API leaves the queue to them."""
    cfg = AutoscaleConfig(queue=QueueTarget(url="redis://r:6379/2", model="embed", prefix="tf"))
    export(cfg, tmp_path)
    docs = load_dir(tmp_path)
    stream = docs["worker-scaledobject.yaml"]["spec"]["triggers"][0]["metadata"]["stream"]
    assert stream == "tf:stream:embed"
    worker = _args(docs, "worker-deployment.yaml")
    assert worker == [
        "tenfold",
        "worker",
        "tenfold.examples.embed:Embed",
        "--queue",
        "redis://r:6379/2?prefix=tf",
        "--queue-name",
        "embed",
        "--grace-s",
        "110",  # inside the pod's 120 s terminationGracePeriodSeconds
        "--metrics-port",
        "9100",
    ]
    template = docs["worker-deployment.yaml"]["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    assert template["spec"]["containers"][0]["ports"] == [
        {"name": "metrics", "containerPort": 9100}
    ]
    api = _args(docs, "api-deployment.yaml")
    assert api[api.index("--queue") + 1] == "redis://r:6379/2?prefix=tf"
    assert "--no-local-workers" in api
    # What the worker is given opens the queue KEDA watches.
    from tenfold.queue import from_url

    q = from_url(worker[4])
    assert q._key("stream", "embed") == stream  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("queue", "match"),
    [
        (QueueTarget(url="redis://r:6379/0?prefix=a", prefix="b"), "prefix='a'"),
        (QueueTarget(url="redis://r:6379/0", group="g"), "queue.group must be 'workers'"),
        (QueueTarget(url="redis://r:6379/0", model="emb"), "serves 'embed'"),
    ],
)
def test_queue_names_the_processes_cannot_follow_are_refused(
    tmp_path: Path, queue: QueueTarget, match: str
) -> None:
    with pytest.raises(ExportError, match=match):
        export(AutoscaleConfig(queue=queue), tmp_path)


def test_a_password_stays_in_a_secret(tmp_path: Path) -> None:
    cfg = AutoscaleConfig(queue=QueueTarget(url="redis://app:s3cret@r:6379/0", model="embed"))
    export(cfg, tmp_path)
    text = "".join(p.read_text() for p in tmp_path.glob("*.yaml"))
    assert "s3cret" not in text
    docs = load_dir(tmp_path)
    env = [
        {
            "name": "TENFOLD_QUEUE_URL",
            "valueFrom": {"secretKeyRef": {"name": "tenfold-queue", "key": "url"}},
        }
    ]
    for name in ("api-deployment.yaml", "worker-deployment.yaml"):
        container = docs[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["env"] == env
        assert container["args"][container["args"].index("--queue") + 1] == "$(TENFOLD_QUEUE_URL)"
    (trigger,) = docs["worker-scaledobject.yaml"]["spec"]["triggers"]
    assert trigger["authenticationRef"] == {"name": "tenfold-queue"}
    auth = docs["queue-triggerauthentication.yaml"]
    assert auth["kind"] == "TriggerAuthentication" and auth["metadata"]["name"] == "tenfold-queue"
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "username", "name": "tenfold-queue", "key": "username"},
        {"parameter": "password", "name": "tenfold-queue", "key": "password"},
    ]


def test_api_keys_come_from_a_secret_and_the_scrape_sends_one(tmp_path: Path) -> None:
    cfg = AutoscaleConfig(
        queue=QueueTarget(url="redis://app:s3cret@r:6379/0", model="embed"),
        deploy=replace(AutoscaleConfig().deploy, api_keys_secret="tenfold-api-keys"),
    )
    export(cfg, tmp_path)
    docs = load_dir(tmp_path)
    template = docs["api-deployment.yaml"]["spec"]["template"]
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in template["spec"]["containers"][0]["env"]
    }
    assert env == {
        "TENFOLD_QUEUE_URL": {"name": "tenfold-queue", "key": "url"},
        "TENFOLD_API_KEYS": {"name": "tenfold-api-keys", "key": "keys"},
    }
    assert "prometheus.io/scrape" not in template["metadata"]["annotations"]  # it would get 401
    api, workers = docs["podmonitor.yaml"]["spec"]["podMetricsEndpoints"]
    assert api["port"] == "http" and api["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "tenfold-api-keys", "key": "metrics-key"},
    }
    assert workers == {"port": "metrics", "path": "/metrics"}
    worker = docs["worker-deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert "TENFOLD_API_KEYS" not in {e["name"] for e in worker["env"]}
    # auth off (the default): no key anywhere, annotation scraping on
    export(AutoscaleConfig(), tmp_path / "open")
    docs = load_dir(tmp_path / "open")
    api_template = docs["api-deployment.yaml"]["spec"]["template"]
    assert "env" not in api_template["spec"]["containers"][0]
    assert api_template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert all(
        "authorization" not in e for e in docs["podmonitor.yaml"]["spec"]["podMetricsEndpoints"]
    )
    with pytest.raises(ConfigError, match=r"api_keys_secret"):
        config_from_dict({"deploy": {"api_keys_secret": 3}})


def test_scale_to_zero_is_refused() -> None:
    scaling = replace(AutoscaleConfig().scaling, min_workers=0)
    with pytest.raises(ExportError, match="min_workers must be >= 1"):
        keda_mapping(AutoscaleConfig(scaling=scaling))


def test_sqlite_queue_cannot_be_exported() -> None:
    with pytest.raises(ExportError, match="redis"):
        export(AutoscaleConfig(queue=QueueTarget(url="sqlite:///q.db")), "/nonexistent-unused")


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['max_worker'\]"):
        config_from_dict({"max_worker": 3})
    with pytest.raises(ConfigError, match=r"autoscale.rules\[0\]"):
        config_from_dict({"rules": [{"name": "x", "metric": "depht", "comparison": ">"}]})
    with pytest.raises(ConfigError, match=r"autoscale\.deploy"):
        config_from_dict({"deploy": {"target": "no-colon"}})


# --- The ScaledObject behaves like the rule policy --------------------------------------------
# A small model of what KEDA + the HPA controller do with the exported object (the HPA's
# stabilizeRecommendationWithBehaviors and its Pods rate limits), evaluated on the *exported
# YAML*, compared with RulePolicy on the same backlog trace.


def _eval_formula(formula: str, lag: float) -> float:
    """Evaluate ``c ? a : b`` expressions of comparisons on ``lag`` (what the export emits)."""
    expr = formula.strip()
    if expr.startswith("(") and expr.endswith(")"):
        expr = expr[1:-1].strip()
    if "?" not in expr:
        return float(expr)
    cond, rest = expr.split("?", 1)
    depth, split_at = 0, -1
    for i, ch in enumerate(rest):
        depth += ch == "("
        depth -= ch == ")"
        if ch == ":" and depth == 0:
            split_at = i
            break
    a, b = rest[:split_at], rest[split_at + 1 :]
    m = re.fullmatch(r"\s*lag\s*(>=|<=|==|>|<)\s*([0-9.]+)\s*", cond)
    assert m, cond
    holds = Comparison(m.group(1)).holds(lag, float(m.group(2)))
    return _eval_formula(a if holds else b, lag)


class HpaModel:
    """``startup_s``: a new pod is ready (counted by the HPA) this long after it is added;
    the HPA multiplies the usage ratio by the *ready* pods (getUsageRatioReplicaCount)."""

    def __init__(self, scaled_object: dict[str, Any], replicas: int, startup_s: float = 0) -> None:
        spec = scaled_object["spec"]
        self.formula = spec["advanced"]["scalingModifiers"]["formula"]
        self.target = float(spec["advanced"]["scalingModifiers"]["target"])
        b = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        self.up, self.down = b["scaleUp"], b["scaleDown"]
        self.min, self.max = spec["minReplicaCount"], spec["maxReplicaCount"]
        self.replicas = replicas
        self.startup_s = startup_s
        self.pods_added_at = [-math.inf] * replicas
        self.recs: list[tuple[float, int]] = []
        self.events: list[tuple[float, int]] = []

    def sync(self, now: float, lag: int) -> int:
        ratio = _eval_formula(self.formula, lag) / self.target
        ready = sum(1 for t in self.pods_added_at if t + self.startup_s <= now)
        raw = self.replicas if abs(ratio - 1.0) <= 0.1 else math.ceil(ratio * ready)
        raw = max(self.min, min(self.max, raw))
        self.recs.append((now, raw))
        up_cut = now - self.up["stabilizationWindowSeconds"]
        down_cut = now - self.down["stabilizationWindowSeconds"]
        up_rec = min([r for t, r in self.recs if t > up_cut] + [raw])
        down_rec = max([r for t, r in self.recs if t > down_cut] + [raw])
        desired = max(self.replicas, up_rec)
        desired = min(desired, down_rec)
        if desired > self.replicas:
            (p,) = self.up["policies"]
            added = sum(d for t, d in self.events if d > 0 and t + p["periodSeconds"] > now)
            desired = min(desired, self.replicas - added + p["value"])
        elif desired < self.replicas:
            (p,) = self.down["policies"]
            removed = sum(-d for t, d in self.events if d < 0 and t + p["periodSeconds"] > now)
            desired = max(desired, self.replicas + removed - p["value"])
        if desired != self.replicas:
            self.events.append((now, desired - self.replicas))
            self.pods_added_at.sort()  # scale-in removes the newest (not yet ready) first
            self.pods_added_at = self.pods_added_at[:desired] + [now] * (desired - self.replicas)
            self.replicas = desired
        return self.replicas


def _backlog_trace() -> list[int]:
    lag = [50] * 600  # neither rule: gives the HPA a history (a new HPA acts on what it has)
    lag += [0] * 700  # idle: 6 -> 5 after 600 s
    lag += [400] * 400  # backlog: up every 120 s
    lag += [50] * 60  # draining (neither rule)
    lag += [0] * 1500  # empty: down window restarts after the last scale-up
    lag += [250] * 130
    lag += [0] * 700
    return lag


@pytest.mark.parametrize(("sync_s", "startup_s"), [(1, 0), (15, 0), (1, 300), (15, 300)])
def test_exported_scaledobject_tracks_the_rule_policy(
    tmp_path: Path, sync_s: int, startup_s: float
) -> None:
    """Also while new pods are not ready yet (start-up longer than the up window): the
    HPA then counts fewer ready pods than replicas, and must still add +2 per window."""
    export(AutoscaleConfig(), tmp_path)
    so = yaml.safe_load((tmp_path / "worker-scaledobject.yaml").read_text())
    hpa = HpaModel(so, replicas=6, startup_s=startup_s)
    policy = RulePolicy()
    state = policy.initial_state(6)
    ours: list[tuple[int, int]] = []
    theirs: list[tuple[int, int]] = []
    for t, lag in enumerate(_backlog_trace()):
        d = policy.decide(state, QueueObservation(depth=lag), float(t))
        if d.desired_workers != state.desired_workers:
            ours.append((t, d.desired_workers))
        state = d.state
        if t % sync_s == 0:
            before = hpa.replicas
            if hpa.sync(float(t), lag) != before:
                theirs.append((t, hpa.replicas))
    # Same sequence of replica counts; each step within one sync period of ours
    # (the HPA keeps samples strictly inside its window, and it only looks every sync_s).
    assert [n for _, n in theirs] == [n for _, n in ours]
    assert [n for _, n in ours] == [5, 7, 9, 11, 10, 9, 11, 10]
    for (t_ours, _), (t_theirs, _) in zip(ours, theirs, strict=True):
        assert abs(t_theirs - t_ours) <= sync_s, (ours, theirs)


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    export(AutoscaleConfig(), tmp_path)
    result = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "alert-rules.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout
