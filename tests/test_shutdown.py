"""Shutdown answers every request it cuts off with JSON 503 ``not_ready``: queued items at
once (SIGTERM), running ones when the grace period ends; never uvicorn's plain-text 500."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve_support import serving_process
from tenfold.config import ModelSettings, ServerSettings
from tenfold.server.app import create_app
from tenfold.server.shutdown import ShutdownMiddleware
from test_api import running


async def _collect(app: Any, *, raises: bool) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    task = asyncio.create_task(ShutdownMiddleware(app)(scope, receive, send))
    await asyncio.sleep(0.01)
    task.cancel()
    if raises:
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        await task  # answered: the request ends there, no traceback for uvicorn to log
    return sent


async def test_a_request_cut_off_before_answering_gets_json_503() -> None:
    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    sent = await _collect(hangs, raises=False)
    start, body = sent
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    assert json.loads(body["body"])["error"] == {
        "type": "not_ready",
        "message": "the server is shutting down",
    }


async def test_a_response_already_started_is_left_alone() -> None:
    async def streams(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.Event().wait()

    sent = await _collect(streams, raises=True)
    assert [m["type"] for m in sent] == ["http.response.start"]


async def test_a_cancelled_error_without_a_cancelled_task_is_no_shutdown() -> None:
    """Awaiting a future someone else cancelled raises CancelledError in a task nobody
    cancelled: a bug to surface (uvicorn's 500 and traceback), not a 503 'shutting down'
    that tells the client to retry elsewhere and logs nothing."""

    async def awaits_a_cancelled_future(scope: Any, receive: Any, send: Any) -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(asyncio.CancelledError):
        await ShutdownMiddleware(awaits_a_cancelled_future)(scope, None, send)  # type: ignore[arg-type]
    assert sent == []


async def test_begin_shutdown_answers_queued_items_at_once_and_lets_running_ones_finish(
    tmp_path: Path,
) -> None:
    settings = ServerSettings(
        models=(ModelSettings("toymodels:Upper", workers=1, max_batch_size=1),),
        queue_url=None,
        cache_url=None,
    )
    app = create_app(settings)
    server = app.state.server
    async with running(app) as c:
        url = "/v1/models/upper/predict"
        first = asyncio.create_task(c.post(url, json={"input": "sleep:1.5"}))
        await asyncio.sleep(0.3)  # the one worker is busy with it
        queued = [asyncio.create_task(c.post(url, json={"input": f"q{i}"})) for i in range(3)]
        await asyncio.sleep(0.2)
        began = time.monotonic()
        server.begin_shutdown()
        answered = await asyncio.gather(*queued)
        assert time.monotonic() - began < 1.0  # not after the running batch
        for r in answered:
            assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready", r.text
            assert r.headers["retry-after"] == "1"
        assert (await first).json()["output"] == "SLEEP:1.5"  # the running one finished
        assert (await c.get("/readyz")).status_code == 503
        late = await c.post(url, json={"input": "late"})
        assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]


async def test_with_predict_via_queue_running_predictions_are_still_served(
    tmp_path: Path,
) -> None:
    """Those predictions wait on durable-queue jobs served by this server's job pump:
    stopping it at SIGTERM left a released job queued until the request's deadline."""
    settings = ServerSettings(
        models=(ModelSettings("toymodels:Upper", workers=1, max_batch_size=1),),
        queue_url=f"sqlite:///{tmp_path}/queue.db",
        predict_via_queue=True,
        cache_url=None,
    )
    app = create_app(settings)
    async with running(app) as c:
        url = "/v1/models/upper/predict"
        first = asyncio.create_task(c.post(url, json={"input": "sleep:1"}))
        await asyncio.sleep(0.3)
        # One job waits in the batcher, one in the durable queue (the pump's slots).
        bodies = [{"input": f"q{i}", "timeout_ms": 8000} for i in range(2)]
        queued = [asyncio.create_task(c.post(url, json=body)) for body in bodies]
        await asyncio.sleep(0.3)
        app.state.server.begin_shutdown()
        answers = await asyncio.gather(*queued)
        assert [r.json().get("output") for r in answers] == ["Q0", "Q1"], [r.text for r in answers]
        assert (await first).json()["output"] == "SLEEP:1"
        assert (await c.get("/readyz")).status_code == 503


@pytest.mark.slow
def test_sigterm_cuts_off_with_json_503_not_plain_500(tmp_path: Path) -> None:
    args = ["toymodels:Upper", "--workers", "1", "--max-batch-size", "1", "--no-cache"]
    log = tmp_path / "serve.log"
    grace = {"TENFOLD_SHUTDOWN_GRACE_S": "1"}
    with serving_process([*args, "--no-queue"], log, env=grace) as (url, proc):

        def post(text: str) -> httpx.Response:
            return httpx.post(url + "/v1/models/upper/predict", json={"input": text}, timeout=30)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            # One runs (and outlives the 1 s grace), two wait in the queue.
            futures = [pool.submit(post, "sleep:20") for _ in range(3)]
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            answers = [f.result() for f in futures]
        for r in answers:
            assert r.status_code == 503, (r.status_code, r.text, log.read_text())
            assert r.json()["error"]["type"] == "not_ready"
        # uvicorn re-raises the SIGTERM it captured once it has shut down cleanly
        assert proc.wait(30) in (0, -signal.SIGTERM), log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()
