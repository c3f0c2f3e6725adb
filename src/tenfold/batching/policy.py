"""The dynamic batching policy: a pure function of ``(queue, now, config, fit)``.

``decide`` says what to do with the items waiting for one model: run a batch
now (possibly cut into length-aware sub-batches), drop items whose deadline
passed (504), shed items that can no longer make their deadline (503), or wait
until ``wake_at``. ``admit`` decides at arrival whether a request is accepted.
Neither reads the clock; the async driver in :mod:`tenfold.runtime.scheduler`
calls them with ``now``.

Fixed mode (``latency_budget_ms`` unset): flush when ``max_batch_size`` items
wait or when the oldest has waited ``batch_timeout_ms``.

Adaptive mode (``latency_budget_ms`` set): every request gets the deadline
``arrival + budget``. With a fitted ``latency(n) = a*n + b`` the policy picks
the largest batch whose predicted completion keeps every item in it inside
its deadline; flushes early when waiting for one
more item would break a deadline; and sheds only the items predicted to miss
(even alone, right now). Until the fit exists it behaves like fixed mode and
sheds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from tenfold.batching.latency import LatencyFit
from tenfold.batching.length import group_by_size


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """Batching knobs for one model. Sizes count *items*, not requests."""

    max_batch_size: int = 32
    batch_timeout_ms: float = 10.0
    latency_budget_ms: float | None = None
    length_aware: bool = True
    padding_waste_threshold: float = 0.2
    min_sub_batch_size: int = 4
    max_queue_items: int = 10_000

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.batch_timeout_ms < 0:
            raise ValueError("batch_timeout_ms must be >= 0")
        if self.latency_budget_ms is not None and self.latency_budget_ms <= 0:
            raise ValueError("latency_budget_ms must be > 0 (or unset for fixed batching)")
        if not 0.0 <= self.padding_waste_threshold < 1.0:
            raise ValueError("padding_waste_threshold must be in [0, 1)")
        if self.min_sub_batch_size < 1:
            raise ValueError("min_sub_batch_size must be at least 1")
        if self.max_queue_items < 1:
            raise ValueError("max_queue_items must be at least 1")

    @property
    def batch_timeout_s(self) -> float:
        return self.batch_timeout_ms / 1000.0

    @property
    def adaptive(self) -> bool:
        return self.latency_budget_ms is not None


@dataclass(frozen=True, slots=True)
class Pending:
    """One queued item as the policy sees it (the payload stays with the driver)."""

    key: int
    enqueued_at: float
    deadline: float | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    batches: tuple[tuple[int, ...], ...] = ()
    """Sub-batches (item keys) to run now, on one worker, in this order."""
    expired: tuple[int, ...] = ()
    """Deadline passed while queued: answer 504, never compute."""
    shed: tuple[int, ...] = ()
    """Predicted to miss the deadline even if run alone now: answer 503."""
    wake_at: float | None = None
    """Decide again at this time if nothing else happens first (None: on the next event)."""
    reason: str = ""

    @property
    def flush(self) -> bool:
        return bool(self.batches)


def _deadline(p: Pending) -> float:
    return p.deadline if p.deadline is not None else math.inf


def _min_finite(*values: float | None) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return min(finite) if finite else None


def _split(chosen: Sequence[Pending], config: BatchConfig) -> tuple[tuple[int, ...], ...]:
    if config.length_aware and chosen and all(p.size is not None for p in chosen):
        groups = group_by_size(
            [(p.key, p.size or 0) for p in chosen],
            waste_threshold=config.padding_waste_threshold,
            min_group=config.min_sub_batch_size,
        )
        return tuple(tuple(g) for g in groups)
    return (tuple(p.key for p in chosen),)


def _adaptive_size(live: Sequence[Pending], now: float, cap: int, fit: LatencyFit) -> int:
    """Largest n <= cap whose predicted completion keeps all n oldest items in their deadlines.

    Items are taken oldest first; the next ones arrived later, so with one budget per
    request their deadlines are no earlier, and admission already checked them."""
    n = min(cap, len(live))
    while n > 1 and now + fit.predict(n) > min(_deadline(p) for p in live[:n]):
        n -= 1
    return n


def decide(
    queue: Sequence[Pending],
    now: float,
    config: BatchConfig,
    fit: LatencyFit | None = None,
    *,
    idle_workers: int = 1,
) -> Decision:
    """What to do with ``queue`` (oldest first) at ``now``. Pure: no clock, no I/O."""
    expired = tuple(p.key for p in queue if _deadline(p) <= now)
    live = [p for p in queue if _deadline(p) > now]
    adaptive = config.adaptive and fit is not None
    shed: tuple[int, ...] = ()
    if adaptive and fit is not None:
        one = fit.predict(1)
        shed = tuple(p.key for p in live if now + one > _deadline(p))
        live = [p for p in live if now + one <= _deadline(p)]

    earliest_deadline = _min_finite(*(_deadline(p) for p in live))
    if not live or idle_workers <= 0:
        return Decision(expired=expired, shed=shed, wake_at=earliest_deadline, reason="idle")

    cap = config.max_batch_size
    oldest = live[0].enqueued_at
    timeout_at = oldest + config.batch_timeout_s

    if not adaptive or fit is None:
        if len(live) >= cap:
            chosen, reason = live[:cap], "full"
        elif now >= timeout_at:
            chosen, reason = live, "timeout"
        else:
            return Decision(
                expired=expired,
                shed=shed,
                wake_at=_min_finite(timeout_at, earliest_deadline),
                reason="waiting",
            )
        return Decision(_split(chosen, config), expired, shed, None, reason)

    n = _adaptive_size(live, now, cap, fit)
    batch_deadline = min(_deadline(p) for p in live[:n])
    if n >= cap:
        reason = "full"
    elif n < len(live):
        reason = "deadline"
    elif now >= timeout_at:
        reason = "timeout"
    elif now + fit.predict(n + 1) > batch_deadline:
        reason = "deadline"
    else:
        latest_start = batch_deadline - fit.predict(n + 1)
        return Decision(
            expired=expired,
            shed=shed,
            wake_at=_min_finite(timeout_at, latest_start),
            reason="waiting",
        )
    return Decision(_split(live[:n], config), expired, shed, None, reason)


class Verdict(StrEnum):
    ACCEPT = "accept"
    QUEUE_FULL = "queue_full"
    SHED = "shed"


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    predicted_done: float | None = None
    retry_after_s: float = 0.0


def admit(
    *,
    queued_items: int,
    new_items: int,
    now: float,
    deadline: float | None,
    config: BatchConfig,
    fit: LatencyFit | None,
    workers: int,
    busy_remaining_s: float = 0.0,
) -> Admission:
    """Accept a request of ``new_items`` behind ``queued_items``, or refuse it.

    Refuses with ``QUEUE_FULL`` (429) past ``max_queue_items``, and in adaptive
    mode with ``SHED`` (503) when the predicted completion, ``busy_remaining_s``
    until a worker frees plus the full batches ahead spread over ``workers``,
    falls after ``deadline``. ``retry_after_s`` estimates when to try again.
    """
    cap = config.max_batch_size
    total = queued_items + new_items
    per_round = fit.predict(min(cap, total)) if fit is not None else 0.0
    rounds = math.ceil(math.ceil(total / cap) / max(workers, 1))
    predicted = now + busy_remaining_s + rounds * per_round
    if total > config.max_queue_items:
        drain_s = rounds * per_round if fit is not None else 1.0
        return Admission(Verdict.QUEUE_FULL, predicted, max(1.0, math.ceil(drain_s)))
    if config.adaptive and fit is not None and deadline is not None and predicted > deadline:
        return Admission(Verdict.SHED, predicted, max(1.0, math.ceil(predicted - deadline)))
    return Admission(Verdict.ACCEPT, predicted if fit is not None else None)
