"""Queue alerts with ``for`` durations and resolution, evaluated purely per tick.

``AlertEngine(rules).evaluate(state, obs, now)`` returns the next state, the
transitions of this tick (``FIRING`` or ``RESOLVED`` events) and the alerts active
now. Like Prometheus: a rule whose condition holds is *pending*; once it has held
for ``for_s`` seconds (timestamps, not ticks) it *fires*; the first tick where the
condition no longer holds resolves it (a pending alert is simply dropped).

Seed rules: WARNING mean wait > 30 s; CRITICAL mean wait > 120 s; CRITICAL depth >
10,000 (each for 60 s so that a burst of a few seconds does not page); CRITICAL
*stalled*: the oldest queued job is older than 120 s. The last one needs no ``for``
(the age already is a duration) and is the only one that fires when every worker is
dead: the wait mean is measured at dequeue, and nothing is dequeued then.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tenfold.autoscale.observation import Comparison, Metric, QueueObservation
from tenfold.autoscale.rules import require_real


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class AlertStatus(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    severity: Severity
    metric: Metric
    comparison: Comparison
    threshold: float
    for_s: float
    summary: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"alert name must be an identifier (snake_case), got {self.name!r}")
        require_real(self.threshold, f"alert {self.name!r}: threshold")
        require_real(self.for_s, f"alert {self.name!r}: for_s")
        if self.for_s < 0:
            raise ValueError(f"alert {self.name!r}: for_s must be >= 0, got {self.for_s!r}")
        if not isinstance(self.summary, str):
            raise ValueError(f"alert {self.name!r}: summary must be a string, got {self.summary!r}")

    def describe(self) -> str:
        return f"{self.metric.value} {self.comparison.value} {self.threshold:g}"


SEED_ALERTS: tuple[AlertRule, ...] = (
    AlertRule(
        "queue_wait_high",
        Severity.WARNING,
        Metric.AVG_WAIT_S,
        Comparison.GT,
        30,
        for_s=60,
        summary="Average queue wait above 30 s",
    ),
    AlertRule(
        "queue_wait_critical",
        Severity.CRITICAL,
        Metric.AVG_WAIT_S,
        Comparison.GT,
        120,
        for_s=60,
        summary="Average queue wait above 2 min",
    ),
    AlertRule(
        "queue_depth_critical",
        Severity.CRITICAL,
        Metric.DEPTH,
        Comparison.GT,
        10_000,
        for_s=60,
        summary="More than 10,000 jobs queued",
    ),
    AlertRule(
        "queue_stalled",
        Severity.CRITICAL,
        Metric.OLDEST_AGE_S,
        Comparison.GT,
        120,
        for_s=0,
        summary="Oldest queued job waited over 2 min (workers dead or stuck?)",
    ),
)


@dataclass(frozen=True, slots=True)
class RuleAlertState:
    pending_since: float | None = None
    firing_since: float | None = None


@dataclass(frozen=True, slots=True)
class AlertsState:
    rules: tuple[RuleAlertState, ...]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A transition (``FIRING`` or ``RESOLVED``) or, in ``active``, a current alert."""

    rule: AlertRule
    status: AlertStatus
    value: float
    at: float
    """Monotonic time of this evaluation."""
    active_since: float
    """When the condition started holding (the pending start)."""


@dataclass(frozen=True, slots=True)
class AlertEvaluation:
    state: AlertsState
    events: tuple[AlertEvent, ...]
    active: tuple[AlertEvent, ...]
    """Pending and firing alerts after this tick."""

    @property
    def firing(self) -> tuple[AlertEvent, ...]:
        return tuple(a for a in self.active if a.status is AlertStatus.FIRING)


class AlertEngine:
    def __init__(self, rules: tuple[AlertRule, ...] = SEED_ALERTS) -> None:
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"alert names must be unique, got {names}")
        self.rules = rules

    def initial_state(self) -> AlertsState:
        return AlertsState(tuple(RuleAlertState() for _ in self.rules))

    def evaluate(self, state: AlertsState, obs: QueueObservation, now: float) -> AlertEvaluation:
        if len(state.rules) != len(self.rules):
            raise ValueError("state does not match these alert rules; use initial_state()")
        new: list[RuleAlertState] = []
        events: list[AlertEvent] = []
        active: list[AlertEvent] = []
        for rule, rs in zip(self.rules, state.rules, strict=True):
            value = obs.value(rule.metric)
            if not rule.comparison.holds(value, rule.threshold):
                if rs.firing_since is not None and rs.pending_since is not None:
                    events.append(
                        AlertEvent(rule, AlertStatus.RESOLVED, value, now, rs.pending_since)
                    )
                new.append(RuleAlertState())
                continue
            since = rs.pending_since if rs.pending_since is not None else now
            firing_since = rs.firing_since
            if firing_since is None and now - since >= rule.for_s:
                firing_since = now
                events.append(AlertEvent(rule, AlertStatus.FIRING, value, now, since))
            status = AlertStatus.FIRING if firing_since is not None else AlertStatus.PENDING
            active.append(AlertEvent(rule, status, value, now, since))
            new.append(RuleAlertState(pending_since=since, firing_since=firing_since))
        return AlertEvaluation(AlertsState(tuple(new)), tuple(events), tuple(active))
