"""Queue alerts inside ``tenfold serve``: the alert rules (``[autoscale.alerts]`` of
``--config``, else the seed rules) evaluated every tick on the
durable queue's statistics, with sinks (log, webhook, and ``GET /v1/alerts``) and the queue
gauges (``tenfold_queue_depth``, ``tenfold_queue_oldest_age_seconds``, ...).

The rules and their ``for`` windows are the pure policy in :mod:`tenfold.autoscale.alerts`;
this is only the thin driver: read the stats, evaluate with ``now``, dispatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from tenfold.autoscale.alerts import SEED_ALERTS, AlertEngine, AlertEvaluation, AlertRule
from tenfold.autoscale.metrics import AutoscaleMetrics
from tenfold.autoscale.observation import QueueObservation
from tenfold.autoscale.sinks import (
    AlertDispatcher,
    AlertSink,
    LogSink,
    MemoryAlertStore,
    WebhookSink,
)
from tenfold.clock import Clock, SystemClock
from tenfold.queue.backend import QueueBackend

log = logging.getLogger("tenfold.alerts")


class QueueWatch:
    """All served models' queues, observed together as one work queue."""

    def __init__(
        self,
        queue: QueueBackend,
        models: Sequence[str],
        *,
        workers: int,
        registry: CollectorRegistry,
        webhook_url: str | None = None,
        clock: Clock | None = None,
        tick_s: float = 1.0,
        store: MemoryAlertStore | None = None,
        rules: tuple[AlertRule, ...] = SEED_ALERTS,
    ) -> None:
        self.queue = queue
        self.models = list(models)
        self.workers = workers
        self.clock = clock or SystemClock()
        self.tick_s = tick_s
        self.engine = AlertEngine(rules)
        self.state = self.engine.initial_state()
        self.store = store or MemoryAlertStore()
        sinks: list[AlertSink] = [LogSink(log), self.store]
        if webhook_url:
            sinks.append(WebhookSink(webhook_url))
        self.dispatcher = AlertDispatcher(sinks)
        self.metrics = AutoscaleMetrics(registry, self.engine.rules)
        self.last: AlertEvaluation | None = None

    async def observe(self) -> QueueObservation:
        stats = [await self.queue.stats(model) for model in self.models]
        waits = [s.avg_wait_s for s in stats if s.avg_wait_s is not None]
        return QueueObservation(
            depth=sum(s.queued for s in stats),
            oldest_age_s=max((s.oldest_queued_age_s for s in stats), default=0.0),
            avg_wait_s=max(waits, default=0.0),
            workers=self.workers,
        )

    async def tick(self) -> AlertEvaluation:
        obs = await self.observe()
        evaluation = self.engine.evaluate(self.state, obs, self.clock.now())
        self.state = evaluation.state
        self.last = evaluation
        # Webhooks block on the network: never on the event loop.
        await asyncio.to_thread(self.dispatcher.dispatch, evaluation, time.time())
        self.metrics.observe_queue(obs)
        self.metrics.set_workers(running=self.workers)
        self.metrics.record_alerts(evaluation, self.engine.rules)
        return evaluation

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:  # a queue outage must not end the watch
                log.warning("queue alert tick failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_s)
