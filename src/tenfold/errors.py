"""The tenfold error tree.

Every error a client can see is a :class:`TenfoldError`; the API layer maps
each class to one HTTP status in :data:`tenfold.server.errors.STATUS` (one table,
one place)::

    TenfoldError
    ├── BadRequest              400  the request is well-formed JSON but unusable
    │   ├── InvalidInput        422  schema/validation error (says which field)
    │   └── PayloadTooLarge     413  body over the configured limit
    ├── Unauthorized            401  no API key, or not a valid one (auth is on)
    ├── NotFound                404
    │   ├── ModelNotFound       404  unknown model name
    │   ├── IndexNotFound       404  unknown vector index name (tenfold.index)
    │   ├── FeatureViewNotFound 404  unknown feature view name (tenfold.features)
    │   └── JobNotFound         404  unknown job id, or its result expired
    ├── Conflict                409  the request contradicts the current state
    │   └── JobNotCancellable   409  only a queued job can be cancelled
    ├── Overloaded              503  shed: predicted to miss its deadline (Retry-After)
    │   ├── QueueFull           429  backpressure: too much queued (Retry-After)
    │   └── RateLimited         429  the caller's tenant is over its rate limit (Retry-After)
    ├── DeadlineExceeded        504  the deadline passed before the result
    ├── NotReady                503  models still loading, or the server shutting down
    ├── QueueUnavailable        503  the queue store (SQLite file, Redis) cannot be reached
    ├── ModelError              500  the model raised on this item (carries its message)
    │   └── WorkerCrashed       500  the worker process died while running the item
    ├── CacheUnavailable        503  a cache backend failed (internal: the resilient
    │                                wrapper turns it into a miss; never sent)
    └── FeatureLoadError        500  a feature view's loader failed (offline source down or wrong)

:class:`ItemError` is what a model may *return* in place of one output to fail
that item alone; it becomes a ``ModelError`` for that item.
"""

from __future__ import annotations

from typing import Any


class TenfoldError(Exception):
    """Base of every error tenfold reports to a client."""

    type: str = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class BadRequest(TenfoldError):
    type = "bad_request"


class InvalidInput(BadRequest):
    type = "invalid_input"


class PayloadTooLarge(BadRequest):
    type = "payload_too_large"


class Unauthorized(TenfoldError):
    """Auth is on and the request has no valid API key (``tenfold.server.auth``)."""

    type = "unauthorized"


class NotFound(TenfoldError):
    type = "not_found"


class ModelNotFound(NotFound):
    type = "model_not_found"


class Overloaded(TenfoldError):
    """Shed before computing. ``retry_after_s`` feeds the Retry-After header."""

    type = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class QueueFull(Overloaded):
    type = "queue_full"


class RateLimited(Overloaded):
    type = "rate_limited"


class DeadlineExceeded(TenfoldError):
    type = "deadline_exceeded"


class NotReady(TenfoldError):
    type = "not_ready"


def shutting_down() -> NotReady:
    """What an item queued at shutdown, or cut off by its grace period, is answered: never
    computed, safe to retry on another replica (503 ``not_ready``, Retry-After)."""
    return NotReady("the server is shutting down")


class ModelError(TenfoldError):
    type = "model_error"


class WorkerCrashed(ModelError):
    type = "worker_crashed"


class ItemError(Exception):
    """Return (or raise) this from ``predict`` to fail one item without its batch-mates."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IndexNotFound(NotFound):
    type = "index_not_found"


class FeatureViewNotFound(NotFound):
    type = "feature_view_not_found"


class FeatureLoadError(TenfoldError):
    """A feature view's loader raised; every caller waiting on that load gets this."""

    type = "feature_load_error"


class CacheUnavailable(TenfoldError):
    """A cache backend failed or timed out.

    Raised by raw backends at their boundary; :class:`tenfold.cache.resilient.
    ResilientBackend` turns it into a miss or a no-op, so it never reaches a client.
    """

    type = "cache_unavailable"


class JobNotFound(NotFound):
    type = "job_not_found"


class Conflict(TenfoldError):
    type = "conflict"


class JobNotCancellable(Conflict):
    type = "job_not_cancellable"


class QueueUnavailable(TenfoldError):
    """The queue's store failed (connection refused, database locked too long)."""

    type = "queue_unavailable"
