"""The job API router in-process (ASGI transport, real SQLite queue), the
queue-backed synchronous call, and the HTTP client over a real socket."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from queue_helpers import free_port, only_notifications_wake
from queue_models import POISON, Echo
from tenfold import errors
from tenfold.queue import Claim, JobStatus, QueueBackend, from_url
from tenfold.queue.api import preferred_wait_s, queue_router
from tenfold.queue.backend import wait_accepted
from tenfold.queue.client import Client
from tenfold.queue.rpc import call
from tenfold.queue.worker import run_worker_async

# Stand-in for the server's one error table (the lead's lives in tenfold.server).
STATUS = {
    errors.InvalidInput: 422,
    errors.PayloadTooLarge: 413,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.QueueFull: 429,
    errors.DeadlineExceeded: 504,
    errors.ModelError: 500,
}


def make_app(queue: QueueBackend, **kwargs: int) -> FastAPI:
    app = FastAPI()
    app.include_router(queue_router(queue, {"echo": Echo}, **kwargs))

    @app.exception_handler(errors.TenfoldError)
    async def handle(request: Request, exc: errors.TenfoldError) -> JSONResponse:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
        headers = {}
        if isinstance(exc, errors.Overloaded):
            headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return JSONResponse({"error": exc.to_dict()}, status_code=status, headers=headers)

    return app


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[QueueBackend]:
    q = from_url(f"sqlite:///{tmp_path}/q.db?max_attempts=2&retry_base_ms=10")
    yield q
    await q.close()


@pytest.fixture
async def http(queue: QueueBackend) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(queue, max_queue_depth=5, max_body_bytes=2000)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_submit_get_and_idempotency(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/models/echo/jobs", json={"input": 7})
    assert r.status_code == 202
    job_id = r.json()["id"]
    assert r.json() == {"id": job_id, "status": "queued"}
    assert r.headers["location"] == f"/v1/jobs/{job_id}"
    got = (await http.get(f"/v1/jobs/{job_id}")).json()
    assert got["status"] == "queued" and got["attempts"] == 0 and got["result"] is None
    h = {"Idempotency-Key": "abc"}
    a = await http.post("/v1/models/echo/jobs", json={"input": 1}, headers=h)
    b = await http.post("/v1/models/echo/jobs", json={"input": 1}, headers=h)
    assert a.json()["id"] == b.json()["id"] != job_id


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/models/echo/jobs", b'{"input": "seven"}', 422),
        ("/v1/models/echo/jobs", b'{"inputs": 7}', 422),
        ("/v1/models/echo/jobs", b"{not json", 422),
        ("/v1/models/echo/jobs", b'{"input": "' + b"x" * 3000 + b'"}', 413),
        ("/v1/models/nope/jobs", b'{"input": 7}', 404),
    ],
)
async def test_bad_submissions_enqueue_nothing(
    http: httpx.AsyncClient, queue: QueueBackend, path: str, body: bytes, status: int
) -> None:
    r = await http.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert await queue.depth("echo") == 0
    if status == 422 and b"seven" in body:
        assert r.json()["error"]["details"][0]["type"] == "int_parsing"


async def test_backpressure_429_with_retry_after(http: httpx.AsyncClient) -> None:
    for i in range(5):
        assert (await http.post("/v1/models/echo/jobs", json={"input": i})).status_code == 202
    r = await http.post("/v1/models/echo/jobs", json={"input": 99})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    queues = (await http.get("/v1/queues")).json()["queues"]
    assert [(s["model"], s["queued"]) for s in queues] == [("echo", 5)]


async def test_cancel(http: httpx.AsyncClient, queue: QueueBackend) -> None:
    job_id = (await http.post("/v1/models/echo/jobs", json={"input": 1})).json()["id"]
    r = await http.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await http.delete(f"/v1/jobs/{job_id}")).status_code == 409
    assert (await http.delete("/v1/jobs/unknown")).status_code == 404
    assert (await http.get("/v1/jobs/unknown")).status_code == 404


async def test_long_poll_is_woken_by_the_result(
    http: httpx.AsyncClient, queue: QueueBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_notifications_wake(monkeypatch)  # unwoken, the poll runs to its 10 s wait
    job_id = (await http.post("/v1/models/echo/jobs", json={"input": 4})).json()["id"]
    poll = asyncio.create_task(http.get(f"/v1/jobs/{job_id}", params={"wait_s": 10}))
    await asyncio.sleep(0.2)
    [c] = await queue.claim("echo", 1, wait_ms=0, lease_ms=5000, worker_id="w")
    t0 = time.monotonic()
    await queue.complete(job_id, c.token, [4, 8])
    body = (await poll).json()
    assert body["status"] == "succeeded" and body["result"] == [4, 8]
    assert time.monotonic() - t0 < 5.0  # woken by the result, not the end of the wait


async def test_prefer_wait_answers_200_with_the_finished_job(
    http: httpx.AsyncClient, queue: QueueBackend
) -> None:
    submit = asyncio.create_task(
        http.post("/v1/models/echo/jobs", json={"input": 4}, headers={"Prefer": "wait=10"})
    )
    claims: list[Claim] = []
    while not claims:  # the job is queued once the POST has enqueued it
        assert not submit.done(), (await submit).text  # a failed POST must not hang us
        claims = await queue.claim("echo", 1, wait_ms=100, lease_ms=5000, worker_id="w")
    await queue.complete(claims[0].job.id, claims[0].token, [4, 8])
    r = await submit
    assert r.status_code == 200, r.text
    assert r.headers["preference-applied"] == "wait=10"
    body = r.json()
    assert body["id"] == claims[0].job.id and r.headers["location"] == f"/v1/jobs/{body['id']}"
    assert body["status"] == "succeeded" and body["result"] == [4, 8]
    assert "idempotency_key" not in body


async def test_prefer_wait_still_202_when_the_job_is_not_done(http: httpx.AsyncClient) -> None:
    t0 = time.monotonic()
    r = await http.post("/v1/models/echo/jobs", json={"input": 4}, headers={"Prefer": "wait=0.3"})
    assert time.monotonic() - t0 >= 0.3
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert r.headers["preference-applied"] == "wait=0.3"


class _WaitFails:
    """The real queue, except that waiting on a job fails (Redis gone mid-request)."""

    def __init__(self, inner: QueueBackend) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def wait(self, job_id: str, timeout_s: float) -> Any:
        raise errors.QueueUnavailable("connection lost")

    async def enqueue_and_wait(self, model: str, input: Any, key: Any = None, **kw: Any) -> Any:
        # The generic path: the real enqueue, then this object's failing wait.
        wait_s = kw.pop("wait_s")
        job = await self.inner.enqueue(model, input, key, **kw)
        return await wait_accepted(self, job, wait_s)  # type: ignore[arg-type]


async def test_prefer_wait_failure_still_answers_202_with_the_accepted_job(
    queue: QueueBackend,
) -> None:
    app = make_app(_WaitFails(queue))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.post("/v1/models/echo/jobs", json={"input": 4}, headers={"Prefer": "wait=5"})
    assert r.status_code == 202, r.text
    job = await queue.get(r.json()["id"])
    assert job is not None and job.status is JobStatus.QUEUED  # accepted, not lost


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 0.0),
        ("wait=5", 5.0),
        ("respond-async, wait=2.5", 2.5),
        ('WAIT="3"', 3.0),
        ("wait=600", 30.0),  # capped like the GET long-poll
        ("wait=soon", 0.0),  # a malformed preference is ignored, never an error
        ("wait=-1", 0.0),
        ("wait=nan", 0.0),
        ("handling=strict", 0.0),
    ],
)
def test_preferred_wait_s(header: str | None, seconds: float) -> None:
    assert preferred_wait_s(header) == seconds


async def test_sync_call_through_the_queue(queue: QueueBackend, tmp_path: Path) -> None:
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker_async("queue_models:Echo", queue, idle_wait_ms=100, stop=stop)
    )
    try:
        assert await call(queue, "echo", 21, timeout_s=10) == [21, 42]
        with pytest.raises(errors.ModelError, match=f"cannot echo {POISON}"):
            await call(queue, "echo", POISON, timeout_s=10)
        # nobody serves "other": the deadline passes and the queued job is cancelled
        with pytest.raises(errors.DeadlineExceeded) as info:
            await call(queue, "other", 1, timeout_s=0.3)
        job = await queue.get(info.value.details["job_id"])
        assert job is not None and job.status is JobStatus.CANCELLED
    finally:
        stop.set()
        await worker


async def test_sync_call_that_loses_the_queue_is_503_not_a_deadline(queue: QueueBackend) -> None:
    # The wait fails at once (Redis gone mid-request): no result, but not "the deadline
    # passed" either; the queued job is cancelled so that no worker runs it for nobody.
    t0 = time.monotonic()
    with pytest.raises(errors.QueueUnavailable, match="lost the queue") as info:
        await call(_WaitFails(queue), "echo", 1, timeout_s=10)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 5
    job = await queue.get(info.value.details["job_id"])
    assert job is not None and job.status is JobStatus.CANCELLED


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The app on a real socket (uvicorn in a thread with its own loop and queue object)."""
    import uvicorn

    url = f"sqlite:///{tmp_path}/q.db"
    app = make_app(from_url(url))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}|{url}"
    srv.should_exit = True
    thread.join(10)


class _Counting(httpx.HTTPTransport):
    """A real HTTP transport that records each request's method and path."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        return super().handle_request(request)


async def test_client_submit_result_predict(server: str) -> None:
    base, queue_url = server.split("|")
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker_async("queue_models:Echo", queue_url, idle_wait_ms=100, stop=stop)
    )
    try:
        transport = _Counting()
        with Client(base, transport=transport) as client:
            job_id = await asyncio.to_thread(client.submit, "echo", 5)
            assert await asyncio.to_thread(client.result, job_id, 10) == [5, 10]
            transport.seen.clear()
            assert await asyncio.to_thread(client.predict, "echo", 6) == [6, 12]
            # Prefer: wait makes it one request: the POST answers with the finished job.
            assert transport.seen == [("POST", "/v1/models/echo/jobs")]
            with pytest.raises(errors.InvalidInput):
                await asyncio.to_thread(client.submit, "echo", "six")
            with pytest.raises(errors.JobNotFound):
                await asyncio.to_thread(client.status, "missing")
    finally:
        stop.set()
        await worker


async def test_an_empty_idempotency_key_is_no_key(http: httpx.AsyncClient) -> None:
    """An empty header folded every later job into the first one (data loss)."""
    ids = [
        (
            await http.post(
                "/v1/models/echo/jobs", json={"input": x}, headers={"Idempotency-Key": " "}
            )
        ).json()["id"]
        for x in (1, 2)
    ]
    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"input": NaN}', "NaN is not valid JSON"),
        (b'{"input": [1, Infinity]}', "Infinity is not valid JSON"),
    ],
)
async def test_bodies_json_cannot_carry_are_422_and_enqueue_nothing(
    queue: QueueBackend, body: bytes, message: str
) -> None:
    app = make_app(queue, max_body_bytes=1_000_000)  # the nested body is ~200 KB
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.post(
            "/v1/models/echo/jobs", content=body, headers={"content-type": "application/json"}
        )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "invalid_input" and message in r.json()["error"]["message"]
    assert (await queue.stats("echo")).queued == 0
