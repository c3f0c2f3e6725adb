"""The HTTP API: ``create_app(settings)`` builds it; one lifespan starts and stops everything.

Routes::

    POST /v1/models/{model}/predict   {"input": X} | {"inputs": [X, ...]}, optional "timeout_ms"
    DELETE /v1/models/{model}/cache   purge the model's cached results and embeddings
    GET  /v1/models                   models, versions, batching config
    GET  /v1/stats                    live figures per model (JSON)
    POST /v1/indexes/{name}/search    nearest items of a vector index (tenfold index build)
    POST /v1/models/{model}/jobs      async job (202 + Location); GET/DELETE /v1/jobs/{id};
                                      GET /v1/queues  (the durable queue, tenfold.queue)
    GET  /v1/alerts                   queue alerts, active and recent
    GET  /healthz                     alive
    GET  /readyz                      200 once every model is loaded, else 503
    GET  /metrics                     Prometheus text
    GET  /openapi.json, /docs

With API keys configured (``tenfold.server.auth``) every route but ``/healthz`` and
``/readyz`` needs one; its tenant scopes the caches and idempotency keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import Response

from tenfold import __version__
from tenfold.autoscale.api import alerts_router
from tenfold.autoscale.config import load_config
from tenfold.autoscale.scaler import LocalScaler
from tenfold.autoscale.sinks import MemoryAlertStore
from tenfold.cache import CacheSettings, CacheStack, ResultCacheConfig, no_cache_requested
from tenfold.clock import Clock, SystemClock
from tenfold.config import ServerSettings
from tenfold.errors import (
    CacheUnavailable,
    DeadlineExceeded,
    InvalidInput,
    ModelError,
    ModelNotFound,
    NotReady,
    Overloaded,
    TenfoldError,
    shutting_down,
)
from tenfold.queue import QueueBackend, QueueStats
from tenfold.queue import from_url as queue_from_url
from tenfold.queue.api import queue_router
from tenfold.queue.rpc import call
from tenfold.ratelimit import Limiter
from tenfold.ratelimit import from_url as limiter_from_url
from tenfold.runtime.jobs import JobPump
from tenfold.runtime.pool import hang_timeout_for
from tenfold.runtime.service import ModelService
from tenfold.server import errors as http_errors
from tenfold.server.alerts import QueueWatch
from tenfold.server.auth import ApiKeyBackend, Keyring, tenant_of, unauthorized
from tenfold.server.autoscaling import build_scaler, describe
from tenfold.server.limits import BodyLimitMiddleware
from tenfold.server.metrics import ServingMetrics
from tenfold.server.ratelimit import RateLimitMiddleware
from tenfold.server.responses import JSONResponse, dumps
from tenfold.server.shutdown import ShutdownMiddleware

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
    ids: list[str] | None = Field(
        default=None,
        description="Item ids (one per input) for embedding models: the embedding cache keys "
        "on the id instead of the content",
    )
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
        # Model processes in this server only where something here runs the model:
        # with --no-local-workers, or --autoscale and --queue, every predict and job goes
        # through the queue to `tenfold worker` processes (the API stays light).
        local = settings.local_workers and not (settings.autoscale and settings.predict_via_queue)
        self.runs_models = local
        for spec in settings.models:
            service = ModelService(
                spec,
                metrics=self.metrics,
                clock=clock,
                price_per_hour_usd=settings.price_per_hour_usd,
                local=local,
                hang_timeout_s=_hang_timeout_s(settings),
            )
            if service.name in self.services:
                raise ValueError(f"two models are named {service.name!r}")
            self.services[service.name] = service
        self.cache = (
            CacheStack.from_url(
                settings.cache_url,
                settings=CacheSettings(result=ResultCacheConfig(ttl_s=settings.result_cache_ttl_s)),
                clock=clock,
                registry=self.registry,
            )
            if settings.cache_url
            else CacheStack.disabled(registry=self.registry)
        )
        self.queue: QueueBackend | None = (
            queue_from_url(settings.queue_url) if settings.queue_url else None
        )
        self.alert_store = MemoryAlertStore()
        self.scaler: LocalScaler | None = None
        if self.queue is not None and settings.autoscale:
            (service,) = self.services.values()
            self.scaler = build_scaler(
                settings,
                service.settings,
                service.name,
                registry=self.registry,
                store=self.alert_store,
                clock=clock,
            )
        self.watch: QueueWatch | None = (
            QueueWatch(
                self.queue,
                list(self.services),
                workers=sum(s.settings.workers for s in self.services.values())
                if settings.local_workers
                else 0,
                registry=self.registry,
                webhook_url=settings.alert_webhook_url,
                clock=clock,
                store=self.alert_store,
                rules=load_config(settings.autoscale_config).alerts,
            )
            if self.queue is not None and self.scaler is None
            else None
        )
        self.limiter: Limiter | None = (
            limiter_from_url(settings.rate_limit_url, clock=clock)
            if settings.rate_limit is not None
            else None
        )
        self.started = time.time()
        self.fatal: str | None = None
        #: Set by :meth:`begin_shutdown` (SIGTERM): no new predictions, /readyz 503.
        self.draining = False
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the app starts
        self.stop: asyncio.Event | None = None  # stops the job pumps and the alert watch

    def begin_shutdown(self) -> None:
        """SIGTERM: answer the items still queued 503 ``not_ready`` at once (never computed:
        safe to retry on another replica; queued jobs are released), stop claiming jobs,
        refuse new predictions and turn /readyz to 503; running batches go on for the
        shutdown grace period (with ``predict_via_queue`` jobs keep being served then:
        running predictions wait on them). Runs on the event loop (``tenfold serve``
        schedules it there from its signal handler)."""
        if self.draining:
            return
        self.draining = True
        if self.settings.predict_via_queue and self.queue is not None:
            # Running predictions wait on their jobs here: the job pumps (or the scaled
            # workers) keep serving them through the grace period. Stopped now, a job
            # released back to the queue waited out its request's deadline.
            log.info("shutting down: running predictions finish")
            return
        log.info("shutting down: queued items answered 503, running batches finish")
        if self.stop is not None:
            self.stop.set()
        for service in self.services.values():
            service.scheduler.fail_queued(shutting_down())

    async def _embed(
        self,
        service: ModelService,
        items: list[Any],
        deadline: float,
        ids: list[str] | None,
        tenant: str | None,
    ) -> tuple[list[Any], list[str]]:
        """An embed stage: one lookup for the whole request, only the misses to the model."""
        cache = self.cache.embedding(service.name, service.version)
        assert cache is not None
        misses = 0

        async def compute(missing: list[Any]) -> list[Any]:
            nonlocal misses
            misses = len(missing)
            outcomes = await self.compute(service, list(missing), deadline)
            if any(isinstance(o, TenfoldError) for o in outcomes):
                raise _ItemsFailed
            return outcomes

        try:
            rows = await cache.embed_many(items, compute, ids=ids, tenant=tenant)
        except _ItemsFailed:
            # Some item failed: nothing was stored; answer item by item, errors in place
            # (rare, so running the request again beats tracking hits through the failure).
            return await self.compute(service, items, deadline), ["miss"] * len(items)
        # The header reports how many items were hits; which ones is not tracked.
        hits = len(items) - misses
        return list(rows), ["hit"] * hits + ["miss"] * (len(items) - hits)

    async def compute(self, service: ModelService, items: list[Any], deadline: float) -> list[Any]:
        """Outcomes per item from the model: the local batcher, or the durable queue
        when ``predict_via_queue`` (remote or local workers take the jobs)."""
        if not (self.settings.predict_via_queue and self.queue is not None):
            return await service.predict(items, deadline)
        queue = self.queue

        async def one(item: Any) -> Any:
            try:
                return await call(
                    queue,
                    service.name,
                    service.normalize(item),
                    timeout_s=max(0.0, deadline - self.clock.now()),
                )
            except TenfoldError as exc:
                return exc

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def run(
        self,
        service: ModelService,
        items: list[Any],
        deadline: float,
        bypass: bool,
        ids: list[str] | None = None,
        tenant: str | None = None,
    ) -> tuple[list[Any], list[str]]:
        """Outcomes per item through the result cache (when on) and the batcher.

        Each item is looked up on its own (concurrent identical misses share one model
        call); the misses still meet in the batcher, so they are computed in batches.
        Returns the outcomes and each item's ``hit``/``miss``. ``tenant`` (auth on)
        scopes result-cache keys and embedding keys (by id and by content): one tenant's
        entries are not another's, nor is a hit on them.
        """
        if type(service.model).embeds and self.cache.enabled and not bypass:
            return await self._embed(service, items, deadline, ids, tenant)
        result_cache = self.cache.result
        if result_cache is None:
            return await self.compute(service, items, deadline), ["miss"] * len(items)

        if not service.ready:
            raise NotReady(f"model {service.name!r} is still loading")

        async def one(item: Any) -> tuple[Any, str]:
            async def compute() -> Any:
                # Admission (429/503) happens here, per item that misses the cache: hits
                # and coalesced duplicates never take a place in the queue.
                (outcome,) = await self.compute(service, [item], deadline)
                if isinstance(outcome, TenfoldError):
                    raise outcome  # never cached, and every waiter gets it
                return outcome

            try:
                cached = await result_cache.get_or_compute(
                    model=service.name,
                    version=service.version,
                    input=service.normalize(item),
                    compute=compute,
                    bypass=bypass,
                    tenant=tenant,
                )
            except TenfoldError as exc:
                return exc, "miss"
            return cached.value, cached.header

        if len(items) == 1:  # the common case: no gather, no extra tasks on the hit path
            pairs = [await one(items[0])]
        else:
            pairs = await asyncio.gather(*(one(item) for item in items))
        return [p[0] for p in pairs], [p[1] for p in pairs]

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


class _ItemsFailed(Exception):
    """Some items of an embedding batch failed: store nothing."""


def _ensure_sqlite_dir(url: str | None) -> None:
    """The embedded queue's data directory (``sqlite:///tenfold-data/queue.db``)."""
    if url and url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _ids(body: PredictRequest, single: bool, n: int) -> list[str] | None:
    if body.ids is None:
        return None
    if len(body.ids) != n:
        raise InvalidInput(
            f'"ids" has {len(body.ids)} entries for {n} input(s)',
            details=[{"field": "body.ids", "message": "one id per input"}],
        )
    return list(body.ids)


def _mount_indexes(app: FastAPI, settings: ServerSettings) -> None:
    """Vector-index search routes, when the ``index`` extra (faiss-cpu) is installed."""
    try:
        from tenfold.index import IndexRegistry
        from tenfold.index.api import make_router
    except ImportError as exc:
        log.info("vector index search off (%s): pip install 'tenfold[index]'", exc)
        return
    app.include_router(make_router(IndexRegistry(Path(settings.index_dir))))


def _seconds_per_item(server: Server) -> float:
    """Model time per item, averaged over every served model (for model-seconds saved)."""
    items = sum(s.stats.items_total for s in server.services.values())
    busy = sum(s.stats.busy_s for s in server.services.values())
    return busy / items if items else 0.0


def _hang_timeout_s(settings: ServerSettings) -> float | None:
    if settings.worker_hang_timeout_s is None:
        return hang_timeout_for(settings.request_timeout_ms)
    return settings.worker_hang_timeout_s or None  # 0: no watchdog


def _unencodable(output: Any, exc: Exception) -> ModelError:
    return ModelError(
        f"the model returned an output JSON cannot carry ({type(output).__name__}): {exc}"
    )


def _encodable_or_error(output: Any) -> Any:
    """``output`` if it encodes as JSON, else that item's error (the others stay answered)."""
    try:
        dumps(output)
    except (TypeError, ValueError) as exc:
        return {"error": _unencodable(output, exc).to_dict()}
    return output


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
        stop = asyncio.Event()
        server.loop, server.stop = asyncio.get_running_loop(), stop
        pumps: list[JobPump] = []
        pump_tasks: list[asyncio.Task[None]] = []
        scaler_task: asyncio.Task[None] | None = None
        if server.watch is not None:
            pump_tasks.append(asyncio.create_task(server.watch.run(stop), name="tenfold-alerts"))
        if server.queue is not None:
            _ensure_sqlite_dir(settings.queue_url)
            if server.scaler is not None:
                # The scaled `tenfold worker` processes serve the jobs, not this server.
                queue, name = server.queue, next(iter(server.services))

                async def read_stats() -> QueueStats:
                    return await queue.stats(name)

                scaler_task = asyncio.create_task(
                    server.scaler.run(read_stats, stop), name="tenfold-autoscale"
                )
            elif settings.local_workers:
                for service in server.services.values():
                    pump = JobPump(server.queue, service)
                    pumps.append(pump)
                    pump_tasks.append(asyncio.create_task(pump.run(stop), name="tenfold-jobs"))
        try:
            yield
        finally:
            stop.set()
            for task in pump_tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for pump in pumps:
                await pump.drain()
            if scaler_task is not None:
                try:
                    await scaler_task  # drains every worker (SIGTERM, then its grace period)
                except Exception:
                    log.exception("the autoscaler failed; its workers were shut down")
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            for service in server.services.values():
                await service.close()
            await server.cache.close()
            if server.queue is not None:
                await server.queue.close()
            if server.limiter is not None:
                await server.limiter.close()

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
    if server.limiter is not None and settings.rate_limit is not None:
        # Runs after the key check (it limits tenants) and before the body is read.
        app.add_middleware(
            RateLimitMiddleware,
            limiter=server.limiter,
            limit=settings.rate_limit,
            registry=server.registry,
        )
    if settings.api_keys:
        # Added last, so it runs first: no body is read for a caller without a key.
        app.add_middleware(
            AuthenticationMiddleware,
            backend=ApiKeyBackend(Keyring(settings.api_keys)),
            on_error=unauthorized,
        )
    app.add_middleware(ShutdownMiddleware)  # outermost: a cut-off request still gets JSON

    _mount_indexes(app, settings)
    if server.queue is not None:
        app.include_router(alerts_router(server.alert_store))
        app.include_router(
            queue_router(
                server.queue,
                {name: type(s.model) for name, s in server.services.items()},
                max_queue_depth=settings.max_queue_depth,
                max_body_bytes=settings.max_body_bytes,
            )
        )

    @app.post("/v1/models/{model}/predict", summary="Run the model on one input or a list")
    async def predict(
        model: str,
        body: PredictRequest,
        request: Request,
        x_tenfold_timeout_ms: float | None = Header(default=None, gt=0),
    ) -> Response:
        started = time.perf_counter()
        service = server.service(model)
        if server.draining:
            raise shutting_down()
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
                bypass = no_cache_requested(request.headers.get("cache-control"))
                async with asyncio.timeout(timeout_ms / 1000.0 + 5.0):
                    outcomes, cache_marks = await server.run(
                        service,
                        items,
                        deadline,
                        bypass,
                        _ids(body, single, len(items)),
                        tenant_of(request.scope),
                    )
            except TimeoutError:
                raise DeadlineExceeded(f"no result within {timeout_ms:.0f} ms") from None
            headers = {}
            if server.cache.enabled:
                hits = cache_marks.count("hit")
                headers["X-Tenfold-Cache"] = "hit" if hits == len(items) else "miss"
                headers["X-Tenfold-Cache-Hits"] = f"{hits}/{len(items)}"
            if single:
                outcome = outcomes[0]
                if isinstance(outcome, TenfoldError):
                    raise outcome
                payload = {"output": outcome, "model": service.name, "version": service.version}
                try:
                    return JSONResponse(payload, headers=headers)
                except (TypeError, ValueError) as exc:
                    raise _unencodable(outcome, exc) from exc
            refused = [o for o in outcomes if isinstance(o, Overloaded | NotReady)]
            if len(refused) == len(outcomes):
                raise refused[0]  # nothing was admitted: answer 429/503 for the request
            outputs = [
                {"error": o.to_dict()} if isinstance(o, TenfoldError) else o for o in outcomes
            ]
            try:
                return JSONResponse(
                    {"outputs": outputs, "model": service.name, "version": service.version},
                    headers=headers,
                )
            except (TypeError, ValueError):
                # One output JSON cannot carry fails alone; its batch-mates are answered.
                # (Encoded again item by item only on this rare path.)
                outputs = [_encodable_or_error(o) for o in outputs]
                return JSONResponse(
                    {"outputs": outputs, "model": service.name, "version": service.version},
                    headers=headers,
                )
        except TenfoldError as exc:
            status = http_errors.status_of(exc)
            if status in (429, 503, 504):
                server.metrics.shed.labels(service.name, exc.type).inc()
            raise
        except Exception:
            status = 500  # answered by the catch-all handler: count it as such
            raise
        finally:
            elapsed = time.perf_counter() - started
            service.stats.record_request(status, elapsed)
            server.metrics.requests.labels(service.name, str(status)).inc()
            server.metrics.request_duration.labels(service.name).observe(elapsed)

    @app.delete("/v1/models/{model}/cache", summary="Purge the model's cached entries")
    async def purge_cache(model: str) -> dict[str, Any]:
        service = server.service(model)
        deleted = await server.cache.purge_model(service.name)
        failed = [layer for layer, n in deleted.items() if n is None]
        if failed:
            raise CacheUnavailable(
                f"cache backend unavailable for {', '.join(failed)}; nothing was purged there",
                details={"deleted": deleted},
            )
        return {"model": service.name, "deleted": deleted}

    @app.get("/v1/models", summary="Served models, versions and batching config")
    async def models() -> dict[str, Any]:
        return {"models": [s.describe() for s in server.services.values()]}

    @app.get("/v1/stats", summary="Live serving figures per model")
    async def stats() -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - server.started, 3),
            "ready": server.ready,
            "models": {name: s.snapshot() for name, s in server.services.items()},
            "cache": server.cache.stats(
                s_per_item={"result": _seconds_per_item(server)},
                usd_per_gpu_hour=settings.price_per_hour_usd,
            ),
            "autoscaler": describe(server.scaler) if server.scaler is not None else None,
        }

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: 200 once every model is loaded")
    async def readyz() -> Response:
        if server.draining:
            return http_errors.error_response(shutting_down())
        if server.ready:
            return JSONResponse({"status": "ready"})
        loading = [n for n, s in server.services.items() if not s.ready]
        failing = {n: str(s.load_error) for n, s in server.services.items() if s.load_error}
        parts = [f"{n} cannot load: {why}" for n, why in failing.items()]
        still = [n for n in loading if n not in failing]
        if still:
            parts.append(f"loading: {', '.join(still)}")
        message = server.fatal or "; ".join(parts)
        return http_errors.error_response(
            NotReady(message, details={"loading": loading, "load_errors": failing})
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        for s in server.services.values():
            s.snapshot()  # refresh gauges
        return Response(generate_latest(server.registry), media_type=CONTENT_TYPE_LATEST)

    return app
