"""The local scaler embedded in ``tenfold serve --autoscale``.

With it, the durable queue's jobs are served by ``tenfold worker`` processes that a
:class:`~tenfold.autoscale.scaler.LocalScaler` starts and drains on the queue's depth
(the seed rules unless ``[autoscale]`` in the ``--config`` file says otherwise), and the
queue alerts come from the same scaler. The policy, alerts and supervisor are the
tested parts in :mod:`tenfold.autoscale`; this module only builds them for a server.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from prometheus_client import CollectorRegistry

from tenfold.autoscale.config import AutoscaleConfig, load_config
from tenfold.autoscale.metrics import AutoscaleMetrics
from tenfold.autoscale.scaler import LocalScaler, worker_command
from tenfold.autoscale.sinks import AlertSink, LogSink, MemoryAlertStore, WebhookSink
from tenfold.autoscale.supervisor import WorkerSupervisor, worker_grace_s
from tenfold.clock import Clock
from tenfold.config import ModelSettings, ServerSettings

log = logging.getLogger("tenfold.autoscale")


def worker_argv(
    model: ModelSettings, queue_url: str, queue_name: str, kill_after_s: float
) -> list[str]:
    """The default worker command with the model's batching settings and options; its
    ``--grace-s`` ends inside the supervisor's ``kill_after_s``."""
    options = ["--queue-name", queue_name, "--grace-s", f"{worker_grace_s(kill_after_s):g}"]
    if model.max_batch_size is not None:
        options += ["--max-batch-size", str(model.max_batch_size)]
    if model.batch_timeout_ms is not None:
        options += ["--batch-timeout-ms", str(model.batch_timeout_ms)]
    if model.options:
        options += ["--options", json.dumps(dict(model.options))]
    return worker_command(model.target, queue_url, *options)


def worker_env() -> dict[str, str]:
    """The server's environment, with its working directory importable as ``serve``
    makes it (``MODULE:CLASS`` resolves against the current directory)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p)
    return env


def build_scaler(
    settings: ServerSettings,
    model: ModelSettings,
    queue_name: str,
    *,
    registry: CollectorRegistry,
    store: MemoryAlertStore,
    clock: Clock | None = None,
) -> LocalScaler:
    """A scaler for ``model``'s queue; its alerts go to the log, ``store`` and the webhook."""
    assert settings.queue_url is not None  # ServerSettings checks it
    config: AutoscaleConfig = load_config(settings.autoscale_config)
    argv = list(config.local.worker_argv) or worker_argv(
        model, settings.queue_url, queue_name, config.local.grace_s
    )
    sinks: list[AlertSink] = [LogSink(logging.getLogger("tenfold.alerts")), store]
    webhook = settings.alert_webhook_url or config.alert_webhook_url
    if webhook:
        sinks.append(WebhookSink(webhook))
    supervisor = WorkerSupervisor(argv, grace_s=config.local.grace_s, env=worker_env())
    log.info(
        "autoscaling %s workers on the queue %r: min %d, max %d",
        model.target,
        queue_name,
        config.scaling.min_workers,
        config.scaling.max_workers,
    )
    return LocalScaler(
        config,
        supervisor,
        sinks=sinks,
        metrics=AutoscaleMetrics(registry, config.alerts),
        clock=clock,
    )


def describe(scaler: LocalScaler) -> dict[str, Any]:
    """The scaler's state for ``/v1/stats``."""
    sup = scaler.supervisor
    return {
        "desired_workers": scaler.state.desired_workers,
        "running": sup.running,
        "draining": sup.draining,
        "min_workers": scaler.config.scaling.min_workers,
        "max_workers": scaler.config.scaling.max_workers,
        "started": sup.counts.started,
        "crashed": sup.counts.crashed,
        "drained": sup.counts.drained,
        "killed": sup.counts.killed,
    }
