"""HTTP routes of the async job API (a FastAPI router the server mounts).

::

    POST   /v1/models/{model}/jobs   body {"input": ...}, header Idempotency-Key
           -> 202 {"id": ..., "status": "queued"}, Location: /v1/jobs/{id}
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
from fastapi.responses import JSONResponse

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
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from exc


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
        if await queue.depth(model) >= max_queue_depth:
            raise QueueFull(
                f"queue {model!r} holds {max_queue_depth} or more jobs", retry_after_s=retry_after_s
            )
        key = request.headers.get("idempotency-key")
        job = await queue.enqueue(model, value, idempotency_key=key)
        return JSONResponse(
            {"id": job.id, "status": job.status.value},
            status_code=202,
            headers={"Location": f"/v1/jobs/{job.id}"},
        )

    @router.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        wait_s = min(max(0.0, wait_s), MAX_WAIT_S)
        job = await queue.wait(job_id, wait_s) if wait_s > 0 else await queue.get(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found (unknown or expired)")
        body = job.to_dict()
        del body["idempotency_key"]
        return body

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
