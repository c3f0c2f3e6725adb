"""Kubernetes export: Deployments, a Service, a KEDA ScaledObject and alert rules.

Everything is generated from one :class:`~tenfold.autoscale.config.AutoscaleConfig`,
the same objects the local scaler and the simulator run, so what is tested locally
is what runs on the cluster. The step rules map onto KEDA exactly (NOTES §3):

- trigger ``redis-streams`` on ``lagCount`` (the undelivered backlog, Redis 7+; not
  ``pendingEntriesCount``, which counts work in flight), named ``lag``;
- ``advanced.scalingModifiers`` turns the lag into a three-valued signal with
  ``metricType: Value`` and ``target: "100"``: *up* (large enough that the HPA aims past
  ``maxReplicaCount`` from a single ready pod), *hold* (exactly the target: the HPA keeps
  the replica count) or *down* (0: the HPA aims for the minimum); seed formula
  ``lag > 100 ? 5200 : (lag == 0 ? 0 : 100)``. The HPA multiplies the ratio by the
  *ready* pods, not the replicas (``getUsageRatioReplicaCount``), so an up value that only
  doubled would stall while new pods start (after 2 -> 4 with two starting: ceil(2 x 2) =
  4, no change), where the policy keeps adding;
- HPA ``behavior`` turns the signal into steps: the scale-up stabilization window is
  the up rule's ``sustained_for_s`` (the HPA takes the *lowest* recommendation of the
  window, so the backlog must hold all of it), one ``Pods`` policy of ``step`` per
  ``max(sustained_for_s, cooldown_s)``; the same for scale-down with the *highest*
  recommendation, which also restarts the down window after a scale-up;
- ``minReplicaCount`` / ``maxReplicaCount`` are the clamp; ``min_workers`` must be at
  least 1, because KEDA's own activation (0 <-> 1 replicas, ``cooldownPeriod``) does
  not follow the rules.

The processes read the same queue KEDA watches: the workers get ``--queue-name`` =
``queue.model`` and the URL carries ``queue.prefix``; the API runs with
``--no-local-workers`` (only the scaled workers consume the queue), and ``queue.model``
must be the name the target model serves under (checked when the target imports here).

Rules that KEDA cannot express exactly (another metric, several up rules, ...) are
refused with :class:`ExportError` instead of being approximated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

from tenfold.autoscale.alerts import AlertRule
from tenfold.autoscale.config import AutoscaleConfig
from tenfold.autoscale.observation import Comparison, Metric
from tenfold.autoscale.rules import ScaleRule
from tenfold.autoscale.supervisor import worker_grace_s
from tenfold.model import load_model_class
from tenfold.queue.redis_streams import GROUP

KEDA_TARGET = 100
"""The neutral value of the modifier formula: at exactly the target the HPA holds."""
TRIGGER_NAME = "lag"
WORKER_METRICS_PORT = 9100
REDIS_GROUP = GROUP
"""The consumer group tenfold workers read with."""


class ExportError(ValueError):
    """The config cannot be exported exactly (the message says why and what to change)."""


@dataclass(frozen=True, slots=True)
class KedaMapping:
    formula: str
    target: str
    scale_up: dict[str, Any]
    scale_down: dict[str, Any]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _seconds(x: float, what: str) -> int:
    if not float(x).is_integer():
        raise ExportError(f"{what} must be whole seconds for Kubernetes, got {x}")
    return int(x)


def keda_mapping(config: AutoscaleConfig) -> KedaMapping:
    scaling = config.scaling
    ups = [r for r in scaling.rules if r.step > 0]
    downs = [r for r in scaling.rules if r.step < 0]
    if len(ups) != 1 or len(downs) > 1:
        raise ExportError(
            "KEDA can express exactly one scale-up rule and at most one scale-down rule; "
            f"got {len(ups)} up and {len(downs)} down"
        )
    up = ups[0]
    down = downs[0] if downs else None
    for rule in (up, down):
        if rule is not None and rule.metric is not Metric.DEPTH:
            raise ExportError(
                f"rule {rule.name!r} uses {rule.metric.value}; KEDA's redis-streams trigger "
                "only sees the backlog (depth = lagCount)"
            )
    if up.comparison not in (Comparison.GT, Comparison.GE):
        raise ExportError(f"scale-up rule {up.name!r} must test depth > or >= a threshold")
    if down is not None:
        if down.comparison not in (Comparison.EQ, Comparison.LT, Comparison.LE):
            raise ExportError(f"scale-down rule {down.name!r} must test depth ==, < or <=")
        lowest_up = (
            up.threshold
            if up.comparison is Comparison.GE
            else math.nextafter(up.threshold, math.inf)
        )
        if down.comparison.holds(lowest_up, down.threshold):
            raise ExportError("the scale-up and scale-down conditions overlap")

    if scaling.min_workers < 1:
        raise ExportError(
            "min_workers must be >= 1 for the KEDA export: scaling to and from zero is "
            "KEDA's activation (cooldownPeriod, activationLagCount), which the rules do not "
            f"express; got {scaling.min_workers}"
        )
    # The HPA wants ceil(ratio * ready pods): with one ready pod this already passes
    # max_workers, so the Pods policy (+step per period) and maxReplicaCount decide.
    up_value = KEDA_TARGET * (scaling.max_workers + up.step)
    up_test = f"{TRIGGER_NAME} {up.comparison.value} {_num(up.threshold)}"
    if down is None:
        formula = f"{up_test} ? {up_value} : {KEDA_TARGET}"
    else:
        down_test = f"{TRIGGER_NAME} {down.comparison.value} {_num(down.threshold)}"
        formula = f"{up_test} ? {up_value} : ({down_test} ? 0 : {KEDA_TARGET})"

    def behavior(rule: ScaleRule | None) -> dict[str, Any]:
        if rule is None:  # no down rule: never scale down
            return {"selectPolicy": "Disabled"}
        period = _seconds(rule.min_interval_s, f"rule {rule.name!r} window/cooldown")
        if not 1 <= period <= 1800:
            raise ExportError(
                f"rule {rule.name!r}: HPA periodSeconds must be 1..1800, got {period}"
            )
        window = _seconds(rule.sustained_for_s, f"rule {rule.name!r} sustained_for_s")
        if window > 3600:
            raise ExportError(f"rule {rule.name!r}: HPA stabilization window must be <= 3600 s")
        return {
            "stabilizationWindowSeconds": window,
            "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": abs(rule.step), "periodSeconds": period}],
        }

    return KedaMapping(
        formula=formula,
        target=str(KEDA_TARGET),
        scale_up=behavior(up),
        scale_down=behavior(down),
    )


def _labels(config: AutoscaleConfig, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": config.deploy.name, "app.kubernetes.io/component": component}


def _meta(config: AutoscaleConfig, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": config.deploy.namespace,
        "labels": _labels(config, component),
    }


def _redis_trigger_metadata(config: AutoscaleConfig) -> dict[str, str]:
    url = urlparse(config.queue.url)
    if url.scheme not in ("redis", "rediss"):
        raise ExportError(
            f"KEDA scales on a Redis stream; the queue URL must be redis:// or rediss://, "
            f"got {config.queue.url!r}"
        )
    meta = {
        "address": f"{url.hostname or 'localhost'}:{url.port or 6379}",
        "stream": config.queue.stream,
        "consumerGroup": config.queue.group,
        "lagCount": str(KEDA_TARGET),
    }
    db = (url.path or "/").lstrip("/")
    if db:
        meta["databaseIndex"] = db
    if url.scheme == "rediss":
        meta["enableTLS"] = "true"
    return meta


QUEUE_URL_ENV = "TENFOLD_QUEUE_URL"


def queue_secret_name(config: AutoscaleConfig) -> str:
    return f"{config.deploy.name}-queue"


def has_credentials(config: AutoscaleConfig) -> bool:
    return urlparse(config.queue.url).password is not None


def process_queue_url(config: AutoscaleConfig) -> str:
    """The queue URL the API and the workers get: ``queue.url`` carrying ``queue.prefix``,
    so they use the stream KEDA watches (``{prefix}:stream:{model}``). A URL with a
    password is never written into a manifest: the processes get ``$(TENFOLD_QUEUE_URL)``,
    which the kubelet expands from the Secret ``{name}-queue`` (key ``url``)."""
    if has_credentials(config):
        _with_prefix(config)  # raises on a prefix mismatch; the Secret holds this URL
        return f"$({QUEUE_URL_ENV})"
    return _with_prefix(config)


def _with_prefix(config: AutoscaleConfig) -> str:
    url = urlparse(config.queue.url)
    params = parse_qs(url.query)
    given = params.get("prefix", [None])[-1]
    if given is not None and given != config.queue.prefix:
        raise ExportError(
            f"queue.url says prefix={given!r} but queue.prefix is {config.queue.prefix!r}: "
            "KEDA would watch another stream than the workers read"
        )
    if given is not None or config.queue.prefix == "tenfold":  # the queue's default prefix
        return config.queue.url
    query = urlencode({**{k: v[-1] for k, v in params.items()}, "prefix": config.queue.prefix})
    return urlunparse(url._replace(query=query))


def _queue_env(config: AutoscaleConfig) -> dict[str, Any]:
    """The container's ``env`` entry carrying the queue URL from the Secret, if it needs one."""
    if not has_credentials(config):
        return {}
    ref = {"name": queue_secret_name(config), "key": "url"}
    return {"env": [{"name": QUEUE_URL_ENV, "valueFrom": {"secretKeyRef": ref}}]}


def trigger_authentication(config: AutoscaleConfig) -> dict[str, Any]:
    """KEDA reads the Redis password (and user) from the same Secret as the processes."""
    url = urlparse(config.queue.url)
    secret = queue_secret_name(config)
    refs = [{"parameter": "password", "name": secret, "key": "password"}]
    if url.username:
        refs.insert(0, {"parameter": "username", "name": secret, "key": "username"})
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": _meta(config, secret, "worker"),
        "spec": {"secretTargetRef": refs},
    }


def _check_queue_names(config: AutoscaleConfig) -> None:
    if config.queue.group != REDIS_GROUP:
        raise ExportError(
            f"queue.group must be {REDIS_GROUP!r}, the consumer group tenfold workers read "
            f"with; got {config.queue.group!r}"
        )
    try:
        served = load_model_class(config.deploy.target).name
    except ValueError:
        return  # not importable here (the image has it): nothing to compare
    if served != config.queue.model:
        raise ExportError(
            f"queue.model is {config.queue.model!r} but {config.deploy.target} serves "
            f"{served!r}: the API would enqueue where KEDA and the workers do not look"
        )


def _api_env(config: AutoscaleConfig) -> dict[str, Any]:
    """The API container's ``env``: the queue URL's Secret, the API keys' Secret."""
    env = list(_queue_env(config).get("env", []))
    if config.deploy.api_keys_secret:
        ref = {"name": config.deploy.api_keys_secret, "key": "keys"}
        env.append({"name": "TENFOLD_API_KEYS", "valueFrom": {"secretKeyRef": ref}})
    return {"env": env} if env else {}


def api_deployment(config: AutoscaleConfig) -> dict[str, Any]:
    d = config.deploy
    name = f"{d.name}-api"
    labels = _labels(config, "api")
    # Annotation-driven scrapers cannot send a key: with auth on, only the PodMonitor scrapes.
    annotations = (
        {}
        if d.api_keys_secret
        else {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(d.api_port),
            "prometheus.io/path": "/metrics",
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(config, name, "api"),
        "spec": {
            "replicas": d.api_replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "containers": [
                        {
                            "name": "api",
                            "image": d.image,
                            "args": [
                                "tenfold",
                                "serve",
                                d.target,
                                "--host",
                                "0.0.0.0",
                                "--port",
                                str(d.api_port),
                                "--queue",
                                process_queue_url(config),
                                "--no-local-workers",
                            ],
                            **_api_env(config),
                            "ports": [{"name": "http", "containerPort": d.api_port}],
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        }
                    ]
                },
            },
        },
    }


def worker_deployment(config: AutoscaleConfig) -> dict[str, Any]:
    d = config.deploy
    labels = _labels(config, "worker")
    resources: dict[str, Any] = {"requests": {"cpu": d.worker_cpu, "memory": d.worker_memory}}
    if d.worker_gpus:
        resources["limits"] = {"nvidia.com/gpu": d.worker_gpus}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(config, f"{d.name}-worker", "worker"),
        "spec": {
            # KEDA owns the replica count from here on; start at the warm minimum.
            "replicas": config.scaling.min_workers,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    # tenfold_queue_wait_seconds: each job's wait, observed at its lease.
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(WORKER_METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    # SIGTERM first: the worker stops claiming and finishes or releases its
                    # batch; Kubernetes only SIGKILLs after this grace period.
                    "terminationGracePeriodSeconds": d.worker_grace_period_s,
                    "containers": [
                        {
                            "name": "worker",
                            "image": d.image,
                            "args": [
                                "tenfold",
                                "worker",
                                d.target,
                                "--queue",
                                process_queue_url(config),
                                "--queue-name",
                                config.queue.model,
                                "--grace-s",
                                _num(worker_grace_s(d.worker_grace_period_s)),
                                "--metrics-port",
                                str(WORKER_METRICS_PORT),
                            ],
                            "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT}],
                            **_queue_env(config),
                            "resources": resources,
                        }
                    ],
                },
            },
        },
    }


def api_service(config: AutoscaleConfig) -> dict[str, Any]:
    d = config.deploy
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(config, f"{d.name}-api", "api"),
        "spec": {
            "selector": _labels(config, "api"),
            "ports": [{"name": "http", "port": d.api_port, "targetPort": "http"}],
        },
    }


def scaled_object(config: AutoscaleConfig) -> dict[str, Any]:
    d = config.deploy
    m = keda_mapping(config)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(config, f"{d.name}-worker", "worker"),
        "spec": {
            "scaleTargetRef": {"name": f"{d.name}-worker"},
            "pollingInterval": d.polling_interval_s,
            "minReplicaCount": config.scaling.min_workers,
            "maxReplicaCount": config.scaling.max_workers,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleUp": m.scale_up, "scaleDown": m.scale_down}
                },
                "scalingModifiers": {
                    "formula": m.formula,
                    "target": m.target,
                    "metricType": "Value",
                },
            },
            "triggers": [
                {
                    "type": "redis-streams",
                    "name": TRIGGER_NAME,
                    "metadata": _redis_trigger_metadata(config),
                    **(
                        {"authenticationRef": {"name": queue_secret_name(config)}}
                        if has_credentials(config)
                        else {}
                    ),
                }
            ],
        },
    }


_PROM_EXPR = {
    Metric.DEPTH: "max(tenfold_queue_depth)",
    Metric.OLDEST_AGE_S: "max(tenfold_queue_oldest_age_seconds)",
    # The queue's own windowed mean, the number the in-process alerts test.
    Metric.AVG_WAIT_S: "max(tenfold_queue_wait_avg_seconds)",
    Metric.WORKERS: 'sum(tenfold_workers{state="running"})',
}


def _prom_duration(seconds: float) -> str:
    s = _seconds(seconds, "alert for_s")
    if s and s % 3600 == 0:
        return f"{s // 3600}h"
    if s and s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


def alert_name(rule: AlertRule) -> str:
    return "Tenfold" + "".join(part.capitalize() for part in rule.name.split("_"))


def prometheus_alert(rule: AlertRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "alert": alert_name(rule),
        "expr": f"{_PROM_EXPR[rule.metric]} {rule.comparison.value} {_num(rule.threshold)}",
    }
    if rule.for_s:
        out["for"] = _prom_duration(rule.for_s)
    out["labels"] = {"severity": rule.severity.value}
    out["annotations"] = {"summary": rule.summary, "tenfold_alert": rule.name}
    return out


def alert_groups(config: AutoscaleConfig) -> dict[str, Any]:
    """The rules file as Prometheus reads it (and ``promtool check rules`` checks it)."""
    return {
        "groups": [
            {
                "name": f"{config.deploy.name}-queue",
                "rules": [prometheus_alert(r) for r in config.alerts],
            }
        ]
    }


def prometheus_rule(config: AutoscaleConfig) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(config, f"{config.deploy.name}-alerts", "alerts"),
        "spec": alert_groups(config),
    }


def pod_monitor(config: AutoscaleConfig) -> dict[str, Any]:
    """Prometheus Operator scrape config (it ignores ``prometheus.io/*`` annotations): the
    API pods' ``http`` port (queue gauges, alert states) and the workers' ``metrics`` port
    (``tenfold_queue_wait_seconds``), so the PrometheusRule's expressions have data.
    With auth on, the API's endpoint sends the Secret's ``metrics-key`` as a bearer token
    (the workers' metrics port serves nothing else and needs none)."""
    api_endpoint: dict[str, Any] = {"port": "http", "path": "/metrics"}
    if config.deploy.api_keys_secret:
        api_endpoint["authorization"] = {
            "type": "Bearer",
            "credentials": {"name": config.deploy.api_keys_secret, "key": "metrics-key"},
        }
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _meta(config, config.deploy.name, "metrics"),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": config.deploy.name}},
            "podMetricsEndpoints": [api_endpoint, {"port": "metrics", "path": "/metrics"}],
        },
    }


def manifests(config: AutoscaleConfig) -> dict[str, dict[str, Any]]:
    """File name -> object; ``export`` writes each as YAML."""
    _check_queue_names(config)
    return {
        "api-deployment.yaml": api_deployment(config),
        "api-service.yaml": api_service(config),
        "worker-deployment.yaml": worker_deployment(config),
        "worker-scaledobject.yaml": scaled_object(config),
        "prometheusrule.yaml": prometheus_rule(config),
        "podmonitor.yaml": pod_monitor(config),
        "alert-rules.yaml": alert_groups(config),
        **(
            {"queue-triggerauthentication.yaml": trigger_authentication(config)}
            if has_credentials(config)
            else {}
        ),
    }


def export(config: AutoscaleConfig, out_dir: str | Path) -> list[Path]:
    import yaml  # the 'deploy' extra

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, obj in manifests(config).items():
        path = out / name
        path.write_text(yaml.safe_dump(obj, sort_keys=False, width=100))
        written.append(path)
    return written
