"""Synchronous request/response through the queue, with a deadline.

What ``tenfold serve --queue URL`` uses for its predict endpoint: enqueue,
then wait for the result (woken by a notification), or give up at the
deadline (a job still queued is cancelled so no worker wastes time on it).
"""

from __future__ import annotations

import asyncio

from tenfold.errors import DeadlineExceeded, ModelError, QueueUnavailable
from tenfold.queue.backend import QueueBackend
from tenfold.queue.job import JSONValue
from tenfold.queue.status import JobStatus


async def call(
    queue: QueueBackend,
    model: str,
    input: JSONValue,
    *,
    timeout_s: float,
    idempotency_key: str | None = None,
) -> JSONValue:
    """The model's output for ``input``. Raises ``DeadlineExceeded`` after ``timeout_s``,
    ``ModelError`` if the job failed, was dead-lettered or cancelled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    job = await queue.enqueue_and_wait(model, input, idempotency_key, wait_s=timeout_s)
    if job.status is JobStatus.SUCCEEDED:
        return job.result
    if not job.status.terminal:
        cut_short = loop.time() < deadline  # the wait failed before the deadline
        if job.status is JobStatus.QUEUED:
            await queue.cancel(job.id)
        if cut_short:
            raise QueueUnavailable(
                f"lost the queue while waiting for job {job.id}", details={"job_id": job.id}
            )
        raise DeadlineExceeded(
            f"no result within {timeout_s:g} s (job {job.id} is {job.status.value})",
            details={"job_id": job.id},
        )
    error = job.error.to_dict() if job.error else None
    message = job.error.message if job.error else f"job {job.status.value}"
    details = {"job_id": job.id, "status": job.status.value, "error": error}
    raise ModelError(message, details=details)
