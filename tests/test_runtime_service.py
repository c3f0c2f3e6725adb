"""ModelService and JobPump around the worker pool: readiness, load failures, not-ready
answers (real worker processes where the pool matters; a SQLite queue for the pump)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tenfold.config import ModelSettings
from tenfold.errors import NotReady, WorkerCrashed
from tenfold.queue import JobStatus
from tenfold.queue.sqlite import SqliteQueue
from tenfold.runtime.jobs import JobPump
from tenfold.runtime.service import ModelService
from tenfold.server.metrics import ServingMetrics


async def until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_replacement_that_keeps_failing_to_load_reports_its_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    flag = tmp_path / "fail-load"
    settings = ModelSettings(
        target="toymodels:Fragile",
        workers=1,
        batch_timeout_ms=0,
        options={"fail_load_if": str(flag)},
    )
    service = ModelService(settings, metrics=ServingMetrics(CollectorRegistry()))
    service.pool.restart_backoff_s = 0.05
    try:
        await service.start()  # in the try: a failed start's workers must not outlive it
        flag.touch()  # from now on, a load fails
        (crashed,) = await service.predict(["crash"], None)
        assert isinstance(crashed, WorkerCrashed)
        assert service.ready  # the replacement is loading: the model stays ready
        waiting = asyncio.create_task(service.predict(["queued"], None))  # no worker: queues
        await until(waiting.done)
        # After max_load_failures (3) failed loads in a row, with backoff, not a tight loop:
        assert 3 <= service.pool.restarts <= 4
        (outcome,) = waiting.result()
        assert isinstance(outcome, NotReady)
        assert "cannot load (the flag file exists)" in outcome.message
        assert not service.ready
        assert service.load_error is not None and "3 failed loads in a row" in service.load_error
        with pytest.raises(NotReady, match="flag file exists"):
            await service.predict(["refused"], None)
        flag.unlink()  # the cause goes away: a later retry loads, the model is ready again
        await until(lambda: service.ready and service.pool.idle_count() == 1)
        assert service.load_error is None
        assert await service.predict(["ok"], None) == ["OK"]
    finally:
        await service.close()
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


class _Service:
    """What JobPump needs of a ModelService, with a scripted ``predict``."""

    name = "m"
    settings = SimpleNamespace(workers=1)
    config = SimpleNamespace(max_batch_size=8)
    ready = True

    def __init__(self, predict: Callable[[list[Any]], Awaitable[list[Any]]]) -> None:
        self._predict = predict

    def validate(self, items: list[Any], field: str) -> list[Any]:
        return items

    async def predict(self, items: list[Any], deadline: float | None) -> list[Any]:
        return await self._predict(items)


async def _pump_once(tmp_path: Path, service: _Service, inputs: list[Any]) -> list[Any]:
    queue = SqliteQueue(tmp_path / "q.db")
    try:
        jobs = [await queue.enqueue("m", x) for x in inputs]
        claims = await queue.claim("m", 8, wait_ms=0, lease_ms=60_000, worker_id="t")
        assert len(claims) == len(inputs)
        pump = JobPump(queue, service, lease_ms=60_000)  # type: ignore[arg-type]
        await pump._run(claims)
        return [await queue.get(j.id) for j in jobs]
    finally:
        await queue.close()


async def test_a_pump_gives_jobs_back_when_the_model_is_not_ready(tmp_path: Path) -> None:
    async def not_ready(items: list[Any]) -> list[Any]:
        raise NotReady("model 'm' cannot load: CUDA out of memory")

    (job,) = await _pump_once(tmp_path, _Service(not_ready), ["a"])
    # Released at once (not left to its lease), and the attempt is not counted.
    assert job.status is JobStatus.QUEUED and job.attempts == 0 and job.error is None


async def test_a_pump_gives_back_items_answered_not_ready(tmp_path: Path) -> None:
    async def shutting_down(items: list[Any]) -> list[Any]:
        return [NotReady("the server is shutting down"), items[1].upper()]

    released, done = await _pump_once(tmp_path, _Service(shutting_down), ["a", "b"])
    assert released.status is JobStatus.QUEUED and released.attempts == 0
    assert released.error is None
    assert done.status is JobStatus.SUCCEEDED and done.result == "B"
