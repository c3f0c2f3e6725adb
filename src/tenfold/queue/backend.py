"""The queue protocol every backend implements (SQLite, Redis Streams).

All methods are coroutines; none blocks the event loop. Delivery is
at-least-once: a job runs again only if its lease expires (the worker died
or stalled), and every write after a claim is fenced by the claim's token, so
a stale worker can neither overwrite a newer attempt's result nor store a
second one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tenfold.errors import QueueFull, TenfoldError
from tenfold.queue.job import Claim, Job, JobError, JSONValue, QueueConfig, QueueStats
from tenfold.queue.status import JobStatus


class QueueBackend(Protocol):
    config: QueueConfig

    async def enqueue(
        self,
        model: str,
        input: JSONValue,
        idempotency_key: str | None = None,
        *,
        max_depth: int | None = None,
    ) -> Job:
        """Add a job (status ``queued``). The same ``(model, idempotency_key)`` returns the
        existing job instead of adding another, for as long as that job is kept. With
        ``max_depth``, raises :class:`~tenfold.errors.QueueFull` instead of adding a job
        when :meth:`depth` is already at least that, checked in the same atomic step
        (one round trip for the API's backpressure check and the enqueue)."""
        ...

    async def enqueue_many(self, model: str, inputs: Sequence[JSONValue]) -> list[Job]:
        """Add several jobs in one round trip (no idempotency keys)."""
        ...

    async def claim(
        self, model: str, max_items: int, *, wait_ms: float, lease_ms: float, worker_id: str
    ) -> list[Claim]:
        """Lease up to ``max_items`` due jobs (oldest first), including jobs whose lease
        expired. Returns as soon as at least one is available, or ``[]`` after ``wait_ms``."""
        ...

    async def heartbeat(self, job_id: str, token: str, lease_ms: float) -> bool:
        """Extend the lease to ``now + lease_ms``. ``False``: the lease was lost."""
        ...

    async def complete(self, job_id: str, token: str, result: JSONValue) -> bool:
        """Store the result and mark ``succeeded``. ``False``: lease lost, nothing written."""
        ...

    async def complete_many(self, results: Sequence[tuple[str, str, JSONValue]]) -> list[bool]:
        """``complete`` for many ``(job_id, token, result)`` in one round trip; each is
        fenced on its own."""
        ...

    async def fail(
        self, job_id: str, token: str, error: JobError, *, retryable: bool = True
    ) -> JobStatus | None:
        """Record a failed attempt: ``queued`` (retry after backoff), ``dead`` (attempts
        spent) or ``failed`` (not retryable). ``None``: lease lost, nothing written."""
        ...

    async def release(self, job_id: str, token: str) -> bool:
        """Give a leased job back (graceful shutdown): ``queued`` and due now."""
        ...

    async def cancel(self, job_id: str) -> bool:
        """Cancel a ``queued`` job. ``False`` if it is unknown or not queued."""
        ...

    async def requeue_dead(self, model: str) -> int:
        """Move every dead letter of ``model`` back to ``queued`` with attempts reset."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` if unknown or expired (``result_ttl_s`` after it finished)."""
        ...

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """Wait until the job is terminal or ``timeout_s`` passes; return its latest state.
        Woken by a notification, not busy polling. Raises ``JobNotFound``."""
        ...

    async def enqueue_and_wait(
        self,
        model: str,
        input: JSONValue,
        idempotency_key: str | None = None,
        *,
        max_depth: int | None = None,
        wait_s: float,
    ) -> Job:
        """:meth:`enqueue`, then :meth:`wait` up to ``wait_s``: the job's latest state.
        Enqueue errors propagate (nothing was added); once the job is added, an error
        while waiting returns the job as accepted instead, so that no caller submits an
        accepted job twice. (What ``Prefer: wait`` and the queued predict path use; a
        backend may save round trips here.)"""
        ...

    async def depth(self, model: str) -> int:
        """Queued jobs of ``model`` (cheap; used for backpressure)."""
        ...

    async def stats(self, model: str) -> QueueStats: ...

    async def models(self) -> list[str]:
        """Every model that has jobs, sorted."""
        ...

    async def close(self) -> None: ...


def check_claim_args(max_items: int, lease_ms: float) -> None:
    """The argument checks every backend's ``claim`` makes, in one place."""
    if max_items < 1:
        raise ValueError("max_items must be at least 1")
    if lease_ms <= 0:
        raise ValueError("lease_ms must be greater than 0")


def queue_full(model: str, max_depth: int | None) -> QueueFull:
    """The error every backend's ``enqueue`` raises past ``max_depth``."""
    return QueueFull(f"queue {model!r} holds {max_depth} or more jobs")


async def wait_accepted(queue: QueueBackend, job: Job, wait_s: float) -> Job:
    """Wait up to ``wait_s`` for an accepted ``job``; if the wait fails, ``job`` as known
    (the contract of :meth:`QueueBackend.enqueue_and_wait` after its enqueue)."""
    if job.status.terminal or wait_s <= 0:
        return job
    try:
        return await queue.wait(job.id, wait_s)
    except TenfoldError:
        return job
