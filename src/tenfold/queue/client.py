"""A small HTTP client for the job API (httpx, synchronous).

::

    from tenfold.queue.client import Client

    with Client("http://127.0.0.1:8000") as c:
        job_id = c.submit("classify", {"sepal_length": 5.1, ...})
        output = c.result(job_id, timeout_s=30)
        output = c.predict("classify", {...})        # submit + result

``result`` long-polls ``GET /v1/jobs/{id}?wait_s=...`` (the server wakes on a
notification), so it does not hammer the server. Errors come back as
:mod:`tenfold.errors` classes.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from tenfold import errors

_BY_STATUS: dict[int, type[errors.TenfoldError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
    429: errors.QueueFull,
    503: errors.Overloaded,
    504: errors.DeadlineExceeded,
}
_BY_TYPE: dict[str, type[errors.TenfoldError]] = {
    cls.type: cls
    for cls in (
        errors.JobNotFound,
        errors.ModelNotFound,
        errors.JobNotCancellable,
        errors.QueueUnavailable,
        errors.NotReady,
        errors.ModelError,
        errors.WorkerCrashed,
        errors.RateLimited,
    )
}
_LONG_POLL_S = 10.0


class Client:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s + _LONG_POLL_S),
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _check(self, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        if not isinstance(err, dict):
            err = {"message": str(err)}
        cls = _BY_TYPE.get(str(err.get("type")), _BY_STATUS.get(response.status_code))
        cls = cls or errors.TenfoldError
        message = str(err.get("message") or err.get("detail") or response.text)
        if issubclass(cls, errors.Overloaded):
            retry_after = float(response.headers.get("retry-after", "1"))
            raise cls(message, retry_after_s=retry_after, details=err.get("details"))
        raise cls(message, details=err.get("details"))

    def submit(self, model: str, input: Any, *, idempotency_key: str | None = None) -> str:
        """Enqueue one job; returns its id."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = self._check(
            self._http.post(f"/v1/models/{model}/jobs", json={"input": input}, headers=headers)
        )
        return str(body["id"])

    def status(self, job_id: str, *, wait_s: float = 0.0) -> dict[str, Any]:
        params = {"wait_s": wait_s} if wait_s > 0 else {}
        return dict(self._check(self._http.get(f"/v1/jobs/{job_id}", params=params)))

    def cancel(self, job_id: str) -> None:
        self._check(self._http.delete(f"/v1/jobs/{job_id}"))

    def result(self, job_id: str, timeout_s: float = 60.0) -> Any:
        """The job's result; raises ``ModelError`` if it failed, ``DeadlineExceeded`` after
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            job = self.status(job_id, wait_s=max(0.0, min(_LONG_POLL_S, remaining)))
            if job["status"] == "succeeded":
                return job["result"]
            if job["status"] in ("failed", "dead", "cancelled"):
                error = job.get("error") or {}
                raise errors.ModelError(
                    str(error.get("message") or f"job {job['status']}"),
                    details={"job_id": job_id, "status": job["status"], "error": error},
                )
            if deadline - time.monotonic() <= 0:
                raise errors.DeadlineExceeded(
                    f"job {job_id} still {job['status']} after {timeout_s:g} s",
                    details={"job_id": job_id},
                )

    def predict(self, model: str, input: Any, *, timeout_s: float = 60.0) -> Any:
        """Submit and wait for the result: one request when the job finishes within the
        first long-poll (``Prefer: wait``), polling after that."""
        wait_s = min(_LONG_POLL_S, timeout_s)
        started = time.monotonic()
        job = self._check(
            self._http.post(
                f"/v1/models/{model}/jobs",
                json={"input": input},
                headers={"Prefer": f"wait={wait_s:g}"},
            )
        )
        if job["status"] == "succeeded":
            return job["result"]
        remaining = max(0.0, timeout_s - (time.monotonic() - started))
        return self.result(str(job["id"]), timeout_s=remaining)
