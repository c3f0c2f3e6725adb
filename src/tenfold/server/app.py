"""The HTTP API: ``create_app(settings)`` builds it; one lifespan starts and stops everything.

Routes::

    POST /v1/models/{model}/predict   {"input": X} | {"inputs": [X, ...]}, optional "timeout_ms"
    GET  /v1/models                   models, versions, batching config
    GET  /v1/stats                    live figures per model (JSON)
    GET  /healthz                     alive
    GET  /readyz                      200 once every model is loaded, else 503
    GET  /metrics                     Prometheus text
    GET  /openapi.json, /docs
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Header
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from tenfold import __version__
from tenfold.clock import Clock, SystemClock
from tenfold.config import ServerSettings
from tenfold.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    NotReady,
    TenfoldError,
)
from tenfold.runtime.service import ModelService
from tenfold.server import errors as http_errors
from tenfold.server.limits import BodyLimitMiddleware
from tenfold.server.metrics import ServingMetrics
from tenfold.server.responses import JSONResponse

log = logging.getLogger("tenfold.server")

ReadyCallback = Callable[[ModelService, int, dict[str, Any]], None]


class PredictRequest(BaseModel):
    """Exactly one of ``input`` (one item) or ``inputs`` (a list, each counted as an item)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"input": "hello world"}, {"inputs": ["a", "b"]}]},
    )
    input: Any = Field(default=None, description="One input")
    inputs: list[Any] | None = Field(default=None, description="Several inputs", min_length=1)
    timeout_ms: float | None = Field(
        default=None, gt=0, description="Deadline for this request (default: server's)"
    )


class Server:
    """Holds the model services of one app (state lives here, not on the app object)."""

    def __init__(self, settings: ServerSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = CollectorRegistry()
        self.metrics = ServingMetrics(self.registry)
        self.services: dict[str, ModelService] = {}
        for spec in settings.models:
            service = ModelService(spec, metrics=self.metrics, clock=clock)
            if service.name in self.services:
                raise ValueError(f"two models are named {service.name!r}")
            self.services[service.name] = service
        self.started = time.time()
        self.fatal: str | None = None

    def service(self, name: str) -> ModelService:
        try:
            return self.services[name]
        except KeyError:
            raise ModelNotFound(
                f"no model named {name!r}",
                details={"available": sorted(self.services)},
            ) from None

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.services.values())


def create_app(
    settings: ServerSettings,
    *,
    clock: Clock | None = None,
    on_ready: ReadyCallback | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    clock = clock or SystemClock()
    server = Server(settings, clock)

    async def load_all() -> None:
        try:
            for service in server.services.values():

                def ready(index: int, info: dict[str, Any], _s: ModelService = service) -> None:
                    if on_ready:
                        on_ready(_s, index, info)

                await service.start(ready)
        except Exception as exc:
            server.fatal = f"model failed to load: {exc}"
            log.error("%s", server.fatal)
            if on_fatal:
                on_fatal(server.fatal)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background so /healthz and /readyz answer while weights load.
        loader = asyncio.create_task(load_all(), name="tenfold-load")
        app.state.loader = loader
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            for service in server.services.values():
                await service.close()

    app = FastAPI(
        title="tenfold",
        version=__version__,
        description="Serve models with dynamic batching. Errors are "
        '`{"error": {"type", "message", "details"}}`.',
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.server = server
    http_errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)

    @app.post("/v1/models/{model}/predict", summary="Run the model on one input or a list")
    async def predict(
        model: str,
        body: PredictRequest,
        x_tenfold_timeout_ms: float | None = Header(default=None, gt=0),
    ) -> Response:
        started = time.perf_counter()
        service = server.service(model)
        single = "input" in body.model_fields_set
        if single == (body.inputs is not None):
            raise InvalidInput(
                'give exactly one of "input" (one item) or "inputs" (a list of items)',
                details=[{"field": "body", "message": "exactly one of input/inputs"}],
            )
        items = [body.input] if single else list(body.inputs or [])
        items = service.validate(items, "input" if single else "inputs")
        timeout_ms = body.timeout_ms or x_tenfold_timeout_ms or settings.request_timeout_ms
        now = server.clock.now()
        deadline = now + timeout_ms / 1000.0
        status = 200
        try:
            try:
                # Also bound the wait here: a hung worker must not hang the request forever.
                outcomes = await asyncio.wait_for(
                    service.predict(items, deadline), timeout_ms / 1000.0 + 5.0
                )
            except TimeoutError:
                raise DeadlineExceeded(f"no result within {timeout_ms:.0f} ms") from None
            if single:
                outcome = outcomes[0]
                if isinstance(outcome, TenfoldError):
                    raise outcome
                return JSONResponse(
                    {"output": outcome, "model": service.name, "version": service.version}
                )
            outputs = [
                {"error": o.to_dict()} if isinstance(o, TenfoldError) else o for o in outcomes
            ]
            return JSONResponse(
                {"outputs": outputs, "model": service.name, "version": service.version}
            )
        except TenfoldError as exc:
            status = http_errors.status_of(exc)
            if http_errors.status_of(exc) in (429, 503, 504):
                server.metrics.shed.labels(service.name, exc.type).inc()
            raise
        finally:
            elapsed = time.perf_counter() - started
            service.stats.record_request(status, elapsed)
            server.metrics.requests.labels(service.name, str(status)).inc()
            server.metrics.request_duration.labels(service.name).observe(elapsed)

    @app.get("/v1/models", summary="Served models, versions and batching config")
    async def models() -> dict[str, Any]:
        return {"models": [s.describe() for s in server.services.values()]}

    @app.get("/v1/stats", summary="Live serving figures per model")
    async def stats() -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - server.started, 3),
            "ready": server.ready,
            "models": {name: s.snapshot() for name, s in server.services.items()},
        }

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: 200 once every model is loaded")
    async def readyz() -> Response:
        if server.ready:
            return JSONResponse({"status": "ready"})
        loading = [n for n, s in server.services.items() if not s.ready]
        message = server.fatal or f"loading: {', '.join(loading)}"
        return http_errors.error_response(NotReady(message, details={"loading": loading}))

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        for s in server.services.values():
            s.snapshot()  # refresh gauges
        return Response(generate_latest(server.registry), media_type=CONTENT_TYPE_LATEST)

    return app
