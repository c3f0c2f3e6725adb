"""Retry policy: pure functions of (attempts, now, rng). No clock, no I/O.

Exponential backoff with "equal jitter": the n-th retry waits between
``(1 - jitter) * d`` and ``d`` where ``d = min(max_delay_s, base_delay_s *
multiplier ** (n - 1))``. Jitter spreads retries of jobs that failed together
(a bad deploy, a Redis blip) so they do not return as one burst.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tenfold.queue.status import JobStatus


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.5  # fraction of the delay that is random, 0..1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def backoff_s(self, attempts: int, rng: random.Random) -> float:
        """Delay before the next attempt after ``attempts`` attempts failed (``attempts >= 1``)."""
        exponent = max(0, attempts - 1)
        # Cap the exponent so huge attempt counts cannot overflow a float.
        delay = min(self.max_delay_s, self.base_delay_s * self.multiplier ** min(exponent, 64))
        return delay * (1.0 - self.jitter) + delay * self.jitter * rng.random()


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """What a failed attempt leads to; ``due_at`` is set only for a retry."""

    status: JobStatus
    due_at: float | None


def decide_failure(
    attempts: int, *, retryable: bool, policy: RetryPolicy, now: float, rng: random.Random
) -> FailureDecision:
    """The outcome of a failed attempt (``attempts`` counts it)."""
    if not retryable:
        return FailureDecision(JobStatus.FAILED, None)
    if attempts >= policy.max_attempts:
        return FailureDecision(JobStatus.DEAD, None)
    return FailureDecision(JobStatus.QUEUED, now + policy.backoff_s(attempts, rng))


def lease_expired_outcome(attempts: int, policy: RetryPolicy) -> JobStatus:
    """A lease ran out (the worker died or stalled): claim again, or dead-letter if spent."""
    return JobStatus.DEAD if attempts >= policy.max_attempts else JobStatus.RUNNING
