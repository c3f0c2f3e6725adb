"""Job records, claims, statistics and queue configuration (plain data, no I/O).

Status transitions (the whole state machine; both backends implement exactly
these, and ``tests/test_queue_contract.py`` checks they agree)::

    enqueue            -> queued
    queued   --claim-->   running      attempts += 1, new lease token
    running  --complete-> succeeded    result stored once (fenced by the token)
    running  --fail-->    queued       retryable and attempts < max: due after backoff
    running  --fail-->    dead         retryable and attempts >= max (dead letter)
    running  --fail-->    failed       not retryable (e.g. invalid input)
    running  --release--> queued       graceful shutdown gives the job back
    running  --lease expires, claimed again--> running (attempts += 1)
    running  --lease expires, attempts >= max--> dead
    queued   --cancel-->  cancelled
    dead     --requeue_dead--> queued  attempts reset to 0

``succeeded``, ``failed`` and ``cancelled`` expire ``result_ttl_s`` after they
finish (``get`` then returns ``None``); dead letters stay until requeued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tenfold.queue.policy import RetryPolicy
from tenfold.queue.status import JobStatus

JSONValue = Any  # anything json.dumps accepts; payloads are JSON, never pickle


@dataclass(frozen=True, slots=True)
class JobError:
    """Why the last attempt failed: exception type name and message (no traceback)."""

    type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work. Timestamps are wall-clock epoch seconds from the queue's clock."""

    id: str
    model: str
    input: JSONValue
    status: JobStatus
    attempts: int
    created_at: float
    updated_at: float
    #: When the job (re)entered the queue: enqueue, retry due time, requeue, or the
    #: expiry of a lease another worker then took over (its queue wait runs from here).
    queued_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: JobError | None = None
    result: JSONValue = None
    idempotency_key: str | None = None

    @classmethod
    def new(
        cls, id: str, model: str, input: JSONValue, now: float, idempotency_key: str | None = None
    ) -> Job:
        """A job just enqueued at ``now``: queued, no attempt yet."""
        return cls(
            id=id,
            model=model,
            input=input,
            status=JobStatus.QUEUED,
            attempts=0,
            created_at=now,
            updated_at=now,
            queued_at=now,
            idempotency_key=idempotency_key,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error.to_dict() if self.error else None,
            "result": self.result,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True, slots=True)
class Claim:
    """A claimed job and the lease token that fences every later write to it."""

    job: Job
    token: str
    lease_expires_at: float


@dataclass(frozen=True, slots=True)
class QueueStats:
    model: str
    queued: int  # waiting to run, including jobs waiting out a retry backoff
    leased: int  # running under a lease
    dead: int
    oldest_queued_age_s: float  # 0.0 when nothing is queued
    avg_wait_s: float | None  # queued -> claimed, over the last ``window_s``; None if no claims
    window_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "queued": self.queued,
            "leased": self.leased,
            "dead": self.dead,
            "oldest_queued_age_s": self.oldest_queued_age_s,
            "avg_wait_s": self.avg_wait_s,
            "window_s": self.window_s,
        }


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Semantics shared by every backend. ``from_url`` fills it from the URL's query."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    result_ttl_s: float = 3600.0
    stats_window_s: float = 60.0
    #: SQLite only: how often a waiting process checks for commits made by other processes.
    poll_interval_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.result_ttl_s <= 0:
            raise ValueError("result_ttl_s must be greater than 0")
        if self.stats_window_s <= 0:
            raise ValueError("stats_window_s must be greater than 0")
        if self.poll_interval_ms <= 0:
            raise ValueError("poll_interval_ms must be greater than 0")
