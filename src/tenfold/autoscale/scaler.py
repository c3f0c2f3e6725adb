"""The local scaler: a thin driver around the pure policy, the alerts and the supervisor.

Each ``tick`` reads the clock once, turns the queue's stats into a
:class:`QueueObservation`, asks :class:`RulePolicy` for the desired count, lets the
:class:`WorkerSupervisor` converge on it, evaluates the alerts and updates the
metrics. ``run`` repeats it every ``tick_s`` until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tenfold.autoscale.alerts import AlertEngine, AlertEvaluation
from tenfold.autoscale.config import AutoscaleConfig
from tenfold.autoscale.metrics import AutoscaleMetrics
from tenfold.autoscale.observation import QueueObservation
from tenfold.autoscale.policy import RulePolicy, ScaleDecision
from tenfold.autoscale.sinks import AlertDispatcher, AlertSink
from tenfold.autoscale.supervisor import WorkerSupervisor
from tenfold.clock import Clock, SystemClock

log = logging.getLogger(__name__)


def worker_command(target: str, queue_url: str, *options: str) -> list[str]:
    """The default worker process: ``python -m tenfold.queue.cli worker TARGET --queue URL``
    followed by ``options`` (``[autoscale.local] worker_argv`` replaces it)."""
    return [
        sys.executable,
        "-m",
        "tenfold.queue.cli",
        "worker",
        target,
        "--queue",
        queue_url,
        *options,
    ]


class StatsLike(Protocol):
    """What the scaler reads of :class:`tenfold.queue.QueueStats`."""

    @property
    def queued(self) -> int: ...
    @property
    def oldest_queued_age_s(self) -> float: ...
    @property
    def avg_wait_s(self) -> float | None: ...


def observation_from_stats(stats: StatsLike, workers: int) -> QueueObservation:
    return QueueObservation(
        depth=stats.queued,
        oldest_age_s=stats.oldest_queued_age_s,
        avg_wait_s=stats.avg_wait_s or 0.0,  # None: nothing claimed in the window
        workers=workers,
    )


class LocalScaler:
    def __init__(
        self,
        config: AutoscaleConfig,
        supervisor: WorkerSupervisor,
        *,
        sinks: list[AlertSink] | None = None,
        metrics: AutoscaleMetrics | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.policy = RulePolicy(config.scaling)
        self.alerts = AlertEngine(config.alerts)
        self.dispatcher = AlertDispatcher(list(sinks or []))
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.wall_clock = wall_clock
        self.state = self.policy.initial_state()
        self.alert_state = self.alerts.initial_state()
        self.last_alerts: AlertEvaluation | None = None

    def tick(self, stats: StatsLike) -> ScaleDecision:
        now = self.clock.now()
        obs = observation_from_stats(stats, self.supervisor.running)
        decision = self.policy.decide(self.state, obs, now)
        self.state = decision.state
        if decision.direction is not None:
            log.info(
                "scale %s to %d: %s",
                decision.direction.value,
                decision.desired_workers,
                decision.reason,
            )
        try:
            self.supervisor.reconcile(decision.desired_workers)
        finally:
            # Even when reconcile raises (e.g. a worker that cannot be started), the alerts
            # are evaluated, dispatched and exported: "stalled" exists for exactly that case.
            self._alert_and_record(obs, decision, now)
        return decision

    def _alert_and_record(self, obs: QueueObservation, decision: ScaleDecision, now: float) -> None:
        evaluation = self.alerts.evaluate(self.alert_state, obs, now)
        self.alert_state = evaluation.state
        self.last_alerts = evaluation
        self.dispatcher.dispatch(evaluation, self.wall_clock())
        if self.metrics is not None:
            self.metrics.observe_queue(obs)
            self.metrics.record_decision(decision.desired_workers, decision.direction)
            self.metrics.set_workers(
                running=self.supervisor.running, draining=self.supervisor.draining
            )
            self.metrics.record_alerts(evaluation, self.config.alerts)

    def _step(self, stats: StatsLike | None) -> None:
        """One step of ``run`` (in a worker thread)."""
        if stats is None:
            # No observation (the queue is down): the policy, the alerts (firing or not)
            # and the queue metrics stay as they were; only crashed workers are replaced.
            self.supervisor.reconcile(self.state.desired_workers)
        else:
            self.tick(stats)

    async def run(
        self, read_stats: Callable[[], Awaitable[StatsLike]], stop: asyncio.Event
    ) -> None:
        """Tick every ``tick_s`` until ``stop`` is set; then drain every worker.

        Each step runs in a worker thread (as :class:`tenfold.server.alerts.QueueWatch`
        dispatches): a slow webhook or a slow ``Popen`` never blocks the event loop. Steps
        run one at a time, so the scaler's state and the supervisor have one writer.
        """
        step: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                started = self.clock.now()
                stats: StatsLike | None
                try:
                    stats = await read_stats()
                except Exception:
                    # The queue is down: keep the pool as it is and try again next tick.
                    log.exception(
                        "reading queue stats failed; keeping %d workers", self.supervisor.running
                    )
                    stats = None
                step = asyncio.create_task(asyncio.to_thread(self._step, stats))
                try:
                    # Shielded: a cancelled run must not shut down under a running step.
                    await asyncio.shield(step)
                except Exception:
                    # e.g. a worker that cannot be started: log it, keep scaling.
                    log.exception("autoscaler tick failed; trying again next tick")
                delay = self.config.tick_s - (self.clock.now() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, delay))
        finally:
            if step is not None and not step.done():
                # Cancelled mid-step: let it finish, or it could start workers after shutdown.
                with contextlib.suppress(Exception):
                    await step
            await asyncio.to_thread(self.supervisor.shutdown)
