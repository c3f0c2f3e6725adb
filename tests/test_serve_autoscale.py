"""``tenfold serve --autoscale`` end to end with real processes: a burst of jobs raises
the number of ``tenfold worker`` processes, the queue drains, the pool returns to its
minimum by draining (never killing) workers, and no job is lost or run twice."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from queue_helpers import free_port, src_env
from tenfold.config import ModelSettings, ServerSettings
from tenfold.queue import JobStatus, from_url
from tenfold.server.app import create_app

pytestmark = pytest.mark.slow

INPUTS = list(range(100, 500))  # 400 jobs, none of them queue_models.POISON
CONFIG = """
[autoscale]
min_workers = 1
max_workers = 3
tick_s = 0.2

[[autoscale.rules]]
name = "backlog"
metric = "depth"
comparison = ">"
threshold = 20
sustained_for_s = 0.5
step = 1

[[autoscale.rules]]
name = "idle"
metric = "depth"
comparison = "=="
threshold = 0
sustained_for_s = 1.5
step = -1

[autoscale.local]
grace_s = 20
"""


def _wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, Path]]:
    import uvicorn

    log = tmp_path / "executions.log"
    monkeypatch.setenv("PYTHONPATH", src_env()["PYTHONPATH"])
    monkeypatch.setenv("ECHO_SLEEP_S", "0.1")  # 16 jobs per 0.1 s batch: ~150 jobs/s/worker
    monkeypatch.setenv("ECHO_EXEC_LOG", str(log))
    config = tmp_path / "tenfold.toml"
    config.write_text(CONFIG)
    queue_url = f"sqlite:///{tmp_path}/q.db"
    port = free_port()
    settings = ServerSettings(
        models=(ModelSettings(target="queue_models:Echo", workers=1),),
        port=port,
        cache_url=None,
        queue_url=queue_url,
        autoscale=True,
        autoscale_config=str(config),
    )
    app = create_app(settings)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    pids: list[int] = []
    try:
        _wait_for(lambda: srv.started, 20, "the server to start")
        supervisor = app.state.server.scaler.supervisor
        yield f"http://127.0.0.1:{port}", queue_url, log
        pids = supervisor.pids()
        assert pids, "no worker was running at the end"
    finally:
        srv.should_exit = True
        thread.join(30)
    assert not thread.is_alive(), "the server did not shut down (workers not drained?)"
    for pid in pids:  # shutdown drained every worker: none is left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_burst_scales_out_drains_and_returns_to_minimum(
    server: tuple[str, str, Path],
) -> None:
    base, queue_url, log = server
    with httpx.Client(base_url=base, timeout=10) as http:
        _burst(http, queue_url, log)


def _burst(http: httpx.Client, queue_url: str, log: Path) -> None:

    def scaler() -> dict[str, Any]:
        snapshot: dict[str, Any] = http.get("/v1/stats").json()["autoscaler"]
        return snapshot

    _wait_for(lambda: scaler()["running"] == 1, 20, "the minimum worker")

    async def burst() -> list[str]:
        queue = from_url(queue_url)
        try:
            return [job.id for job in await queue.enqueue_many("echo", INPUTS)]
        finally:
            await queue.close()

    ids = asyncio.run(burst())
    most = 1

    def drained() -> bool:
        nonlocal most
        state = scaler()
        most = max(most, state["running"])
        (stats,) = http.get("/v1/queues").json()["queues"]
        return bool(stats["queued"] == 0 and stats["leased"] == 0)

    _wait_for(drained, 60, "the queue to drain")
    assert most >= 2, "the backlog never raised the worker count"

    _wait_for(
        lambda: (s := scaler())["running"] == 1 and s["draining"] == 0,
        60,
        "the pool to return to its minimum",
    )
    state = scaler()
    assert state["killed"] == 0 and state["crashed"] == 0  # scale-in drained, never killed
    assert state["drained"] >= most - 1

    async def outcomes() -> list[Any]:
        queue = from_url(queue_url)
        try:
            return [await queue.get(job_id) for job_id in ids]
        finally:
            await queue.close()

    jobs = asyncio.run(outcomes())
    assert all(job.status is JobStatus.SUCCEEDED for job in jobs)
    assert [job.result for job in jobs] == [[i, 2 * i] for i in INPUTS]
    runs = collections.Counter(int(line) for line in log.read_text().split())
    assert set(runs) == set(INPUTS)  # nothing lost
    assert max(runs.values()) == 1  # nothing run twice by scale-in

    metrics = http.get("/metrics").text
    assert 'tenfold_autoscaler_scale_events_total{direction="up"}' in metrics
