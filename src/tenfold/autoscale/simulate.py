"""Replay a traffic trace through the real policy and alert objects on a fake clock.

One step per simulated second ``t``:

1. arrivals: the integral of the trace's rate over ``[t, t+1)``, rounded so that the
   cumulative count is ``floor(integral)`` (deterministic, no random numbers);
2. workers whose start-up time has passed begin claiming;
3. service: running workers x per-worker throughput, FIFO; a job that arrived in
   second ``a`` and starts in second ``t`` waited ``t - a`` seconds (1 s resolution);
4. every ``tick_s`` the :class:`~tenfold.autoscale.policy.RulePolicy` and the
   :class:`~tenfold.autoscale.alerts.AlertEngine` see a
   :class:`~tenfold.autoscale.observation.QueueObservation` with ``now = t``, exactly
   as the local scaler does; new workers start after ``worker_startup_s``; scale-in
   cancels starting workers first, then releases running ones.

The result has one row per second and a summary: p50/p99/max wait (jobs still queued
when the trace ends count with their age then, ``T - a`` for a trace of ``T`` seconds:
a lower bound on their wait, not left out), minutes in
violation of the wait SLO (a minute in which the oldest queued job or a dequeued job
waited longer than ``slo_wait_s``), worker-hours (starting workers are paid for), and
the same against static provisioning for the peak (``ceil(peak_qps / per-worker
throughput)`` workers all the time).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tenfold.autoscale.alerts import AlertEngine
from tenfold.autoscale.config import AutoscaleConfig
from tenfold.autoscale.observation import QueueObservation
from tenfold.autoscale.policy import RulePolicy
from tenfold.autoscale.rules import Direction
from tenfold.autoscale.service import ServiceModel
from tenfold.autoscale.traces import Trace

TIMELINE_COLUMNS = (
    "t_s",
    "qps",
    "arrivals",
    "served",
    "depth",
    "oldest_age_s",
    "avg_wait_s",
    "workers",
    "starting",
    "desired",
    "alerts",
)


@dataclass(frozen=True, slots=True)
class Row:
    t_s: int
    qps: float
    arrivals: int
    served: int
    depth: int
    oldest_age_s: float
    avg_wait_s: float
    workers: int
    """Running (claiming) workers."""
    starting: int
    desired: int
    alerts: str
    """Firing alerts, ``|``-separated."""


@dataclass(frozen=True, slots=True)
class Summary:
    duration_s: float
    jobs_arrived: int
    jobs_served: int
    jobs_left_queued: int
    wait_p50_s: float
    wait_p99_s: float
    wait_max_s: float
    slo_wait_s: float
    slo_minutes_violated: int
    worker_hours: float
    static_peak_workers: int
    static_peak_worker_hours: float
    worker_hours_vs_static: float
    cost: float | None
    static_cost: float | None
    peak_workers: int
    scale_ups: int
    scale_downs: int
    alerts_fired: dict[str, int]
    items_per_s_per_worker: float
    batch_latency_s: float
    service: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SimulationResult:
    rows: tuple[Row, ...]
    summary: Summary


def _quantile(counts: Counter[int], q: float) -> float:
    """Nearest-rank quantile of integer waits given as value -> count."""
    total = sum(counts.values())
    if total == 0:
        return 0.0
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return float(value)
    return float(max(counts))


def simulate(trace: Trace, service: ServiceModel, config: AutoscaleConfig) -> SimulationResult:
    sim = config.simulate
    policy = RulePolicy(config.scaling)
    engine = AlertEngine(config.alerts)
    pstate = policy.initial_state()
    astate = engine.initial_state()
    tick_every = max(1, round(config.tick_s))
    window = max(1, round(sim.wait_window_s))
    startup = round(sim.worker_startup_s)
    rate = service.items_per_s

    queue: deque[list[int]] = deque()  # [arrival second, count], oldest first
    depth = 0
    running = pstate.desired_workers  # the warm minimum is up before the trace starts
    starting: deque[int] = deque()  # ready-at seconds, in start order
    credit = 0.0
    arrived_total = 0
    served_total = 0
    waits: Counter[int] = Counter()
    recent: deque[tuple[int, int, int]] = deque()  # (second, wait sum, count) for avg_wait
    recent_sum = recent_count = 0
    worker_seconds = 0
    peak_workers = running
    firing: tuple[str, ...] = ()
    fired: Counter[str] = Counter()
    ups = downs = 0
    violated_minutes: set[int] = set()
    rows: list[Row] = []

    for t in range(math.ceil(trace.duration_s)):
        # The epsilon keeps float sums like 19.999999999 from losing a job.
        arrivals = math.floor(trace.cumulative(t + 1) + 1e-9) - arrived_total
        arrived_total += arrivals
        if arrivals:
            queue.append([t, arrivals])
            depth += arrivals
        while starting and starting[0] <= t:
            starting.popleft()
            running += 1

        credit += running * rate
        served = min(depth, math.floor(credit))
        credit -= served
        if depth == served:
            credit = min(credit, 1.0)  # idle capacity is lost, not banked
        left = served
        max_wait_now = 0
        wait_sum = 0
        while left:
            cohort = queue[0]
            take = min(left, cohort[1])
            wait = t - cohort[0]
            waits[wait] += take
            wait_sum += wait * take
            max_wait_now = max(max_wait_now, wait)
            left -= take
            cohort[1] -= take
            if cohort[1] == 0:
                queue.popleft()
        depth -= served
        served_total += served
        if served:
            recent.append((t, wait_sum, served))
            recent_sum += wait_sum
            recent_count += served
        while recent and recent[0][0] <= t - window:
            _, s, c = recent.popleft()
            recent_sum -= s
            recent_count -= c

        oldest_age = float(t - queue[0][0]) if queue else 0.0
        avg_wait = recent_sum / recent_count if recent_count else 0.0
        if max(oldest_age, max_wait_now) > sim.slo_wait_s:
            violated_minutes.add(t // 60)

        if t % tick_every == 0:
            obs = QueueObservation(
                depth=depth, oldest_age_s=oldest_age, avg_wait_s=avg_wait, workers=running
            )
            decision = policy.decide(pstate, obs, float(t))
            pstate = decision.state
            if decision.direction is Direction.UP:
                ups += 1
            elif decision.direction is Direction.DOWN:
                downs += 1
            evaluation = engine.evaluate(astate, obs, float(t))
            astate = evaluation.state
            for event in evaluation.events:
                if event.status.value == "firing":
                    fired[event.rule.name] += 1
            firing = tuple(a.rule.name for a in evaluation.firing)
            have = running + len(starting)
            want = decision.desired_workers
            for _ in range(want - have):
                starting.append(t + startup)
            for _ in range(have - want):
                if starting:
                    starting.pop()  # cancel the newest start first
                else:
                    running -= 1
        worker_seconds += running + len(starting)
        peak_workers = max(peak_workers, running + len(starting))
        rows.append(
            Row(
                t_s=t,
                qps=trace.rate_at(t),
                arrivals=arrivals,
                served=served,
                depth=depth,
                oldest_age_s=oldest_age,
                avg_wait_s=round(avg_wait, 3),
                workers=running,
                starting=len(starting),
                desired=pstate.desired_workers,
                alerts="|".join(firing),
            )
        )

    # Jobs still queued have waited at least until the end of the trace (the earliest
    # they could be served is second T); leaving them out would make a queue that never
    # drains look fast.
    end = math.ceil(trace.duration_s)
    for arrived_at, count in queue:
        waits[end - arrived_at] += count
    static_workers = config.scaling.clamp(max(1, math.ceil(trace.peak_qps / rate)))
    static_hours = static_workers * math.ceil(trace.duration_s) / 3600.0
    worker_hours = worker_seconds / 3600.0
    price = sim.worker_hour_price
    summary = Summary(
        duration_s=trace.duration_s,
        jobs_arrived=arrived_total,
        jobs_served=served_total,
        jobs_left_queued=depth,
        wait_p50_s=_quantile(waits, 0.50),
        wait_p99_s=_quantile(waits, 0.99),
        wait_max_s=float(max(waits)) if waits else 0.0,
        slo_wait_s=sim.slo_wait_s,
        slo_minutes_violated=len(violated_minutes),
        worker_hours=round(worker_hours, 4),
        static_peak_workers=static_workers,
        static_peak_worker_hours=round(static_hours, 4),
        worker_hours_vs_static=round(worker_hours / static_hours, 4) if static_hours else 0.0,
        cost=round(worker_hours * price, 4) if price else None,
        static_cost=round(static_hours * price, 4) if price else None,
        peak_workers=peak_workers,
        scale_ups=ups,
        scale_downs=downs,
        alerts_fired=dict(sorted(fired.items())),
        items_per_s_per_worker=rate,
        batch_latency_s=service.batch_latency_s,
        service=service.source,
    )
    return SimulationResult(tuple(rows), summary)


def write_outputs(
    result: SimulationResult, out_dir: str | Path, *, plot: bool = True
) -> list[Path]:
    """``timeline.csv``, ``summary.json`` and (with matplotlib) ``timeline.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "timeline.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TIMELINE_COLUMNS)
        for r in result.rows:
            writer.writerow(
                [
                    r.t_s,
                    f"{r.qps:g}",
                    r.arrivals,
                    r.served,
                    r.depth,
                    f"{r.oldest_age_s:g}",
                    f"{r.avg_wait_s:g}",
                    r.workers,
                    r.starting,
                    r.desired,
                    r.alerts,
                ]
            )
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(result.summary.to_dict(), indent=2) + "\n")
    written = [csv_path, summary_path]
    if plot:
        from tenfold.autoscale.plot import plot_timeline

        written.append(plot_timeline(result, out / "timeline.png"))
    return written
