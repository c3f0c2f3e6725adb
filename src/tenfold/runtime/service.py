"""One served model: its class (for validation and sizes), worker pool and scheduler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tenfold.batching.policy import BatchConfig
from tenfold.clock import Clock, SystemClock
from tenfold.config import ModelSettings
from tenfold.errors import InvalidInput, NotReady
from tenfold.model import Model, load_model_class, resolve_target
from tenfold.runtime.pool import DEFAULT_HANG_TIMEOUT_S, WorkerPool
from tenfold.runtime.scheduler import Scheduler
from tenfold.runtime.stats import ModelStats
from tenfold.server.metrics import ServingMetrics


class ModelService:
    def __init__(
        self,
        settings: ModelSettings,
        *,
        metrics: ServingMetrics,
        clock: Clock | None = None,
        price_per_hour_usd: float = 1.006,
        local: bool = True,
        hang_timeout_s: float | None = DEFAULT_HANG_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.target = resolve_target(settings.target)
        cls = load_model_class(self.target)
        # Built in the API process without weights: name, version, validation, sizes.
        self.model = cls(**dict(settings.options))
        self.name = cls.name
        self.version = self.model.version
        self._adapter: TypeAdapter[Any] | None = (
            TypeAdapter(cls.input_model) if cls.input_model is not None else None
        )
        self._sized = type(self.model).item_size is not Model.item_size
        self.config = BatchConfig(
            max_batch_size=settings.max_batch_size or cls.max_batch_size or 32,
            batch_timeout_ms=(
                settings.batch_timeout_ms
                if settings.batch_timeout_ms is not None
                else cls.batch_timeout_ms
                if cls.batch_timeout_ms is not None
                else 10.0
            ),
            latency_budget_ms=settings.latency_budget_ms,
            length_aware=settings.length_aware,
            max_queue_items=settings.max_queue_items,
        )
        self.clock = clock or SystemClock()
        self.price_per_hour_usd = price_per_hour_usd
        self.metrics = metrics
        self.stats = ModelStats()
        self.pool = WorkerPool(
            self.target,
            workers=settings.workers,
            options=dict(settings.options),
            on_change=self._changed,
            on_restart=self.metrics.restarts.labels(self.name).inc,
            hang_timeout_s=hang_timeout_s,
        )
        self.scheduler = Scheduler(
            self.pool,
            self.config,
            workers=settings.workers,
            clock=self.clock,
            stats=self.stats,
            on_batch=self._on_batch,
        )
        self.started_at = self.clock.now()
        self._start_error: str | None = None
        self._started = False
        #: False: no worker processes here; remote ``tenfold worker`` processes run it.
        self.local = local

    # -- lifecycle -----------------------------------------------------------
    async def start(self, on_ready: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        if not self.local:
            self.metrics.ready.labels(self.name, self.version).set(1)
            return
        try:
            await self.pool.start(on_ready)
        except Exception as exc:
            self._start_error = str(exc)
            raise
        self.started_at = self.clock.now()
        self.scheduler.start()
        self._started = True
        self.metrics.ready.labels(self.name, self.version).set(1)

    async def close(self) -> None:
        await self.scheduler.close()
        if self.local:
            await self.pool.close()

    @property
    def load_error(self) -> str | None:
        """Why the model cannot be served: its first load failed, or a worker keeps
        failing to load (see :attr:`WorkerPool.error`)."""
        if self._start_error is not None:
            return self._start_error
        return self.pool.error if self.local else None

    @property
    def ready(self) -> bool:
        """Loaded once and not failing to load: a replacement worker loading after a
        crash does not make the model unready (its requests queue meanwhile)."""
        return (not self.local or self.pool.ready) and self.load_error is None

    @property
    def serving(self) -> bool:
        """A worker has the model loaded now (not only once): what claiming durable-queue
        jobs needs, since a claimed job's lease is renewed while it waits here."""
        return not self.local or self.pool.loaded_count() > 0

    def _not_ready(self) -> NotReady:
        if self.load_error is not None:
            return NotReady(f"model {self.name!r} cannot load: {self.load_error}")
        return NotReady(f"model {self.name!r} is still loading")

    def _changed(self) -> None:
        if self.local and self.pool.error is not None:
            # No worker will come for the queued items soon: tell them why, now.
            self.scheduler.fail_queued(self._not_ready())
        if self.local and self._started:
            self.metrics.ready.labels(self.name, self.version).set(1 if self.ready else 0)
        self.scheduler.notify()

    def _on_batch(self, timings: list[tuple[int, float]], waits: list[float]) -> None:
        m, name = self.metrics, self.name
        n = sum(k for k, _ in timings)
        m.batches.labels(name).inc()
        m.inferences.labels(name).inc(n)
        m.batch_size.labels(name).observe(n)
        for _, seconds in timings:
            m.batch_duration.labels(name).observe(seconds)
            m.busy.labels(name).inc(seconds)
        for w in waits:
            m.batcher_wait.labels(name).observe(w)
        fit = self.scheduler.latency.fit
        if fit:
            m.slope.labels(name).set(fit.slope_s)
            m.intercept.labels(name).set(fit.intercept_s)

    # -- requests --------------------------------------------------------------
    def validate(self, items: list[Any], field: str) -> list[Any]:
        """Validate each input against the model's ``input_model``; 422 names the field."""
        if self._adapter is None:
            return items
        out, problems = [], []
        for i, item in enumerate(items):
            try:
                out.append(self._adapter.validate_python(item))
            except ValidationError as exc:
                where = field if field == "input" else f"{field}.{i}"
                for err in exc.errors():
                    loc = ".".join([where, *(str(p) for p in err["loc"])])
                    problems.append({"field": loc, "message": err["msg"], "type": err["type"]})
        if problems:
            first = problems[0]
            raise InvalidInput(f"{first['field']}: {first['message']}", details=problems)
        return out

    def normalize(self, item: Any) -> Any:
        """The validated input as plain JSON (what a result-cache key hashes)."""
        if self._adapter is None:
            return item
        return self._adapter.dump_python(item, mode="json")

    async def predict(self, items: list[Any], deadline: float | None) -> list[Any]:
        if not self.ready:
            raise self._not_ready()
        sizes = [self.model.item_size(x) for x in items] if self._sized else None
        return await self.scheduler.submit(items, deadline=deadline, sizes=sizes)

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "name": self.name,
            "version": self.version,
            "target": self.target,
            "ready": self.ready,
            "workers": self.settings.workers,
            "batching": {
                "max_batch_size": c.max_batch_size,
                "batch_timeout_ms": c.batch_timeout_ms,
                "latency_budget_ms": c.latency_budget_ms,
                "mode": "adaptive" if c.adaptive else "fixed",
                "length_aware": c.length_aware and self._sized,
                "max_queue_items": c.max_queue_items,
            },
        }

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        self.metrics.batcher_depth.labels(self.name).set(self.scheduler.depth)
        snap = self.stats.snapshot(
            now,
            queue_depth=self.scheduler.depth,
            latency=self.scheduler.latency,
            uptime_s=now - self.started_at,
            workers=self.settings.workers,
        )
        snap["worker_restarts"] = self.pool.restarts
        snap["cost"] = self.cost(now)
        return {**self.describe(), **snap}

    def cost(self, now: float) -> dict[str, Any]:
        """Live cost of this model's workers at ``price_per_hour_usd`` each: busy fraction
        (the idle-accelerator figure), money spent and idle, cost per 1K requests, and the
        share of model time batching saved (measured batches vs ``latency(1)`` per item)."""
        from tenfold.planner.costs import live_cost

        workers = self.settings.workers
        wall_s = max(0.0, now - self.started_at) * workers
        busy_s = min(self.stats.busy_s, wall_s)
        requests = sum(self.stats.requests_by_status.values())
        live = live_cost(busy_s, wall_s, requests, self.price_per_hour_usd)
        fit = self.scheduler.latency.fit
        saved = None
        if fit is not None and self.stats.items_total:
            unbatched_s = self.stats.items_total * fit.predict(1)
            saved = max(0.0, 1.0 - self.stats.busy_s / unbatched_s) if unbatched_s > 0 else None
        self.metrics.busy_ratio.labels(self.name).set(live.busy_fraction)
        if live.cost_per_1k_requests_usd is not None:
            self.metrics.cost_per_1k.labels(self.name).set(live.cost_per_1k_requests_usd)
        return {
            "price_per_hour_usd": self.price_per_hour_usd,
            "busy_fraction": round(live.busy_fraction, 4),
            "spent_usd": round(live.cost_usd, 6),
            "idle_usd": round(live.idle_cost_usd, 6),
            "cost_per_1k_requests_usd": None
            if live.cost_per_1k_requests_usd is None
            else round(live.cost_per_1k_requests_usd, 6),
            "batching_saved_fraction": None if saved is None else round(saved, 4),
        }
