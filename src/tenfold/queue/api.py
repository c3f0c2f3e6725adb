"""HTTP routes of the async job API (a FastAPI router the server mounts).

::

    POST   /v1/models/{model}/jobs   body {"input": ...}, header Idempotency-Key
           -> 202 {"id": ..., "status": "queued"}, Location: /v1/jobs/{id}
           with header "Prefer: wait=5" (RFC 7240, as Replicate's API does): waits up to
           5 s (at most 30) for the job to finish and then answers 200 with the whole job,
           as GET /v1/jobs/{id} would, saving the client its first poll; still 202 if not
    GET    /v1/jobs/{id}[?wait_s=10] -> the job (status, result or error, attempts, times);
           wait_s long-polls until it finishes (woken by a notification, at most 30 s)
    DELETE /v1/jobs/{id}             -> cancels a queued job
    GET    /v1/queues                -> statistics per model queue

Routes raise :mod:`tenfold.errors` classes; the server maps them to statuses in
its one table (InvalidInput 422, PayloadTooLarge 413, ModelNotFound and
JobNotFound 404, JobNotCancellable 409, QueueFull 429 + Retry-After,
QueueUnavailable 503).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request

from tenfold.errors import (
    InvalidInput,
    JobNotCancellable,
    JobNotFound,
    ModelNotFound,
    PayloadTooLarge,
    QueueFull,
)
from tenfold.model import Model
from tenfold.queue.backend import QueueBackend
from tenfold.queue.job import Job
from tenfold.server.auth import tenant_of
from tenfold.server.responses import JSONResponse

MAX_WAIT_S = 30.0


async def read_json_body(request: Request, max_body_bytes: int) -> Any:
    """The JSON body, counting streamed bytes (``Content-Length`` is not trusted)."""
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise PayloadTooLarge(f"request body over {max_body_bytes} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks), parse_constant=_reject_constant)
    except RecursionError as exc:
        raise InvalidInput("request body is nested too deeply to parse") from exc
    except ValueError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (the stdlib parser accepts them; a job's input
    would later come back as null)."""
    raise ValueError(f"{name} is not valid JSON")


def preferred_wait_s(prefer: str | None) -> float:
    """Seconds from a ``Prefer`` header's ``wait`` preference (RFC 7240), capped at
    :data:`MAX_WAIT_S`; 0 without one. Other preferences are ignored, as the RFC allows,
    and so is a malformed value (a preference is never an error)."""
    if not prefer:
        return 0.0
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        try:
            seconds = float(value.strip().strip('"'))
        except ValueError:
            return 0.0
        if not seconds > 0:  # also NaN
            return 0.0
        return min(seconds, MAX_WAIT_S)
    return 0.0


def job_body(job: Job) -> dict[str, Any]:
    """A job as the API shows it (the idempotency key stays private)."""
    body = job.to_dict()
    del body["idempotency_key"]
    return body


def queue_router(
    queue: QueueBackend,
    models: Mapping[str, type[Model[Any, Any]]],
    *,
    max_queue_depth: int = 10_000,
    max_body_bytes: int = 1 << 20,
    retry_after_s: float = 1.0,
) -> APIRouter:
    """Routes for ``queue``; ``models`` maps each served model name to its class, whose
    ``input_model`` validates inputs before anything is enqueued."""
    from pydantic import TypeAdapter, ValidationError

    adapters = {
        name: TypeAdapter(cls.input_model) if cls.input_model is not None else None
        for name, cls in models.items()
    }
    router = APIRouter()

    @router.post("/v1/models/{model}/jobs", status_code=202)
    async def submit(model: str, request: Request) -> JSONResponse:
        if model not in adapters:
            raise ModelNotFound(f"unknown model {model!r}", details={"models": sorted(adapters)})
        body = await read_json_body(request, max_body_bytes)
        if not isinstance(body, dict) or "input" not in body:
            raise InvalidInput('body must be a JSON object {"input": ...}')
        adapter = adapters[model]
        value = body["input"]
        if adapter is not None:
            try:
                value = adapter.dump_python(adapter.validate_python(value), mode="json")
            except ValidationError as exc:
                details = json.loads(exc.json(include_url=False, include_context=False))
                raise InvalidInput(f"invalid input for {model!r}", details=details) from exc
        # An empty key is no key: "" would fold every later keyless-looking job into one.
        key = (request.headers.get("idempotency-key") or "").strip() or None
        tenant = tenant_of(request.scope)
        if key is not None and tenant is not None:
            key = f"{tenant}/{key}"  # one tenant's key never returns another's job
        headers: dict[str, str] = {}
        wait_s = preferred_wait_s(request.headers.get("prefer"))
        try:
            # The depth check rides in the enqueue's own atomic step: one round trip.
            if wait_s > 0:
                # Failures while waiting answer 202 with the accepted job (an error
                # here would make a client resubmit it): see enqueue_and_wait.
                job = await queue.enqueue_and_wait(
                    model, value, key, max_depth=max_queue_depth, wait_s=wait_s
                )
                headers["Preference-Applied"] = f"wait={wait_s:g}"
            else:
                job = await queue.enqueue(model, value, key, max_depth=max_queue_depth)
        except QueueFull as exc:
            raise QueueFull(str(exc), retry_after_s=retry_after_s) from None
        headers["Location"] = f"/v1/jobs/{job.id}"
        if wait_s > 0 and job.status.terminal:
            return JSONResponse(job_body(job), status_code=200, headers=headers)
        return JSONResponse(
            {"id": job.id, "status": job.status.value}, status_code=202, headers=headers
        )

    @router.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        wait_s = min(max(0.0, wait_s), MAX_WAIT_S)
        job = await queue.wait(job_id, wait_s) if wait_s > 0 else await queue.get(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found (unknown or expired)")
        return job_body(job)

    @router.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str) -> dict[str, str]:
        if await queue.cancel(job_id):
            return {"id": job_id, "status": "cancelled"}
        job = await queue.get(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found (unknown or expired)")
        raise JobNotCancellable(
            f"job {job_id} is {job.status.value}; only a queued job can be cancelled"
        )

    @router.get("/v1/queues")
    async def queues() -> dict[str, Any]:
        names = sorted(set(await queue.models()) | set(adapters))
        return {"queues": [(await queue.stats(name)).to_dict() for name in names]}

    return router
