"""Durable job queue: SQLite or Redis Streams behind one protocol, chosen by URL.

::

    from tenfold.queue import from_url

    queue = from_url("sqlite:///data/queue.db")        # or "redis://127.0.0.1:6379/0"
    job = await queue.enqueue("classify", {"sepal_length": 5.1, ...}, idempotency_key="k1")
    done = await queue.wait(job.id, timeout_s=10)

Workers: ``python -m tenfold.queue.cli worker MODULE:CLASS --queue URL``. See
``docs/queue.md`` for the delivery semantics.
"""

from tenfold.queue.backend import QueueBackend
from tenfold.queue.job import Claim, Job, JobError, QueueConfig, QueueStats
from tenfold.queue.policy import RetryPolicy
from tenfold.queue.status import JobStatus
from tenfold.queue.url import from_url

__all__ = [
    "Claim",
    "Job",
    "JobError",
    "JobStatus",
    "QueueBackend",
    "QueueConfig",
    "QueueStats",
    "RetryPolicy",
    "from_url",
]
