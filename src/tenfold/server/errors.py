"""Our errors -> HTTP responses, in one table.

Every error body is ``{"error": {"type", "message", "details"?}}``; never HTML,
never a stack trace. The most specific class in :data:`STATUS` wins.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tenfold import errors as e
from tenfold.server.responses import JSONResponse

log = logging.getLogger("tenfold.http")

STATUS: dict[type[e.TenfoldError], int] = {
    e.BadRequest: 400,
    e.InvalidInput: 422,
    e.PayloadTooLarge: 413,
    e.Unauthorized: 401,
    e.NotFound: 404,
    e.ModelNotFound: 404,
    e.Overloaded: 503,
    e.QueueFull: 429,
    e.RateLimited: 429,
    e.DeadlineExceeded: 504,
    e.NotReady: 503,
    e.ModelError: 500,
    e.WorkerCrashed: 500,
    e.CacheUnavailable: 503,
    e.IndexNotFound: 404,
    e.FeatureViewNotFound: 404,
    e.FeatureLoadError: 500,
    e.JobNotFound: 404,
    e.Conflict: 409,
    e.JobNotCancellable: 409,
    e.QueueUnavailable: 503,
}


def status_of(exc: e.TenfoldError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def error_body(exc: e.TenfoldError) -> dict[str, Any]:
    return {"error": exc.to_dict()}


def error_response(exc: e.TenfoldError) -> Response:
    headers = {}
    if isinstance(exc, e.Overloaded):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif isinstance(exc, e.NotReady):
        headers["Retry-After"] = "1"
    return JSONResponse(error_body(exc), status_code=status_of(exc), headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    return [
        {"field": _loc(err.get("loc", ())), "message": err.get("msg", ""), "type": err.get("type")}
        for err in errors
    ]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into our JSON shape."""

    async def tenfold_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, e.TenfoldError)
        return error_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = validation_details(list(exc.errors()))
        first = details[0] if details else {"field": "body", "message": "invalid"}
        if any(d["type"] == "json_invalid" for d in details):
            message = f"request body is not valid JSON: {first['message']}"
        else:
            message = f"{first['field']}: {first['message']}"
        return error_response(e.InvalidInput(message, details=details))

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's "There was an error parsing the body" (bytes that are not UTF-8, JSON
            # nested too deeply): invalid input like any other, 422 as the README says.
            return error_response(e.InvalidInput(f"request body could not be parsed: {exc.detail}"))
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"type": kind, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return JSONResponse(
            {"error": {"type": "internal", "message": f"internal error: {type(exc).__name__}"}},
            status_code=500,
        )

    app.add_exception_handler(e.TenfoldError, tenfold_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
