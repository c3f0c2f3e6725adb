"""One served model: its class (for validation and sizes), worker pool and scheduler."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tenfold.batching.policy import BatchConfig
from tenfold.clock import Clock, SystemClock
from tenfold.config import ModelSettings
from tenfold.errors import InvalidInput, NotReady
from tenfold.model import Model, load_model_class, resolve_target
from tenfold.runtime.pool import WorkerPool
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
        self.metrics = metrics
        self.stats = ModelStats()
        self.pool = WorkerPool(
            self.target,
            workers=settings.workers,
            options=dict(settings.options),
            on_change=self._changed,
            on_restart=self.metrics.restarts.labels(self.name).inc,
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
        self.load_error: str | None = None

    # -- lifecycle -----------------------------------------------------------
    async def start(self, on_ready: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        t0 = time.perf_counter()
        try:
            await self.pool.start(on_ready)
        except Exception as exc:
            self.load_error = str(exc)
            raise
        self.load_s = time.perf_counter() - t0
        self.started_at = self.clock.now()
        self.scheduler.start()
        self.metrics.ready.labels(self.name, self.version).set(1)

    async def close(self) -> None:
        await self.scheduler.close()
        await self.pool.close()

    @property
    def ready(self) -> bool:
        return self.pool.ready and self.load_error is None

    def _changed(self) -> None:
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

    @property
    def seconds_per_item(self) -> float:
        """Measured model time per item so far (0.0 before the first batch)."""
        return self.stats.busy_s / self.stats.items_total if self.stats.items_total else 0.0

    async def predict(self, items: list[Any], deadline: float | None) -> list[Any]:
        if not self.ready:
            raise NotReady(f"model {self.name!r} is still loading")
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
        return {**self.describe(), **snap}
