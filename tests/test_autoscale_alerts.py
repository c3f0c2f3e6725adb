from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tenfold.autoscale.alerts import (
    SEED_ALERTS,
    AlertEngine,
    AlertEvaluation,
    AlertsState,
    AlertStatus,
)
from tenfold.autoscale.api import alerts_router
from tenfold.autoscale.observation import QueueObservation
from tenfold.autoscale.sinks import (
    AlertDispatcher,
    LogSink,
    MemoryAlertStore,
    WebhookError,
    WebhookSink,
)
from tenfold.clock import FakeClock


def timeline(
    engine: AlertEngine, rows: list[tuple[float, QueueObservation]]
) -> list[tuple[float, str, AlertStatus]]:
    state = engine.initial_state()
    out = []
    for now, obs in rows:
        ev = engine.evaluate(state, obs, now)
        state = ev.state
        out += [(now, e.rule.name, e.status) for e in ev.events]
    return out


def wait(avg_wait_s: float, workers: int = 2) -> QueueObservation:
    return QueueObservation(depth=50, avg_wait_s=avg_wait_s, workers=workers)


def test_wait_warning_fires_after_its_for_window_and_resolves() -> None:
    engine = AlertEngine()
    rows = [(float(t), wait(45.0)) for t in range(0, 100, 10)] + [(100.0, wait(10.0))]
    assert timeline(engine, rows) == [
        (60.0, "queue_wait_high", AlertStatus.FIRING),
        (100.0, "queue_wait_high", AlertStatus.RESOLVED),
    ]


def test_wait_below_for_window_never_fires() -> None:
    engine = AlertEngine()
    rows = [(0.0, wait(45.0)), (59.0, wait(45.0)), (60.0, wait(5.0)), (130.0, wait(45.0))]
    assert timeline(engine, rows) == []


def test_critical_wait_fires_both_wait_alerts() -> None:
    engine = AlertEngine()
    rows = [(0.0, wait(200.0)), (30.0, wait(200.0)), (60.0, wait(200.0)), (61.0, wait(60.0))]
    assert timeline(engine, rows) == [
        (60.0, "queue_wait_high", AlertStatus.FIRING),
        (60.0, "queue_wait_critical", AlertStatus.FIRING),
        (61.0, "queue_wait_critical", AlertStatus.RESOLVED),
    ]


def test_depth_critical() -> None:
    engine = AlertEngine()
    big = QueueObservation(depth=10_001, workers=50)
    edge = QueueObservation(depth=10_000, workers=50)
    rows = [(0.0, big), (59.9, big), (60.0, big), (70.0, edge)]
    assert timeline(engine, rows) == [
        (60.0, "queue_depth_critical", AlertStatus.FIRING),
        (70.0, "queue_depth_critical", AlertStatus.RESOLVED),
    ]


def test_stalled_fires_with_zero_workers_when_wait_alerts_cannot() -> None:
    """All workers dead: nothing is dequeued, so the mean wait reads 0; only age grows."""
    engine = AlertEngine()
    rows = [
        (float(t), QueueObservation(depth=40, oldest_age_s=float(t), avg_wait_s=0.0, workers=0))
        for t in range(0, 200, 10)
    ]
    events = timeline(engine, rows)
    assert events == [(130.0, "queue_stalled", AlertStatus.FIRING)]
    # A worker comes back and drains the queue: resolved.
    state = AlertsState(engine.initial_state().rules)
    for now, obs in rows:
        state = engine.evaluate(state, obs, now).state
    ev = engine.evaluate(state, QueueObservation(depth=0, workers=1), 200.0)
    assert [(e.rule.name, e.status) for e in ev.events] == [("queue_stalled", AlertStatus.RESOLVED)]


def test_active_lists_pending_then_firing() -> None:
    engine = AlertEngine()
    ev = engine.evaluate(engine.initial_state(), wait(45.0), 0.0)
    assert [(a.rule.name, a.status) for a in ev.active] == [
        ("queue_wait_high", AlertStatus.PENDING)
    ]
    assert ev.firing == ()
    ev = engine.evaluate(ev.state, wait(45.0), 60.0)
    assert [(a.rule.name, a.status) for a in ev.firing] == [("queue_wait_high", AlertStatus.FIRING)]


def _drive(engine: AlertEngine, clock: FakeClock, dispatcher: AlertDispatcher) -> None:
    """A thin driver on a fake clock: waits high for 90 s, then low."""
    state = engine.initial_state()
    for step in range(12):
        obs = wait(45.0 if step < 9 else 1.0)
        ev: AlertEvaluation = engine.evaluate(state, obs, clock.now())
        state = ev.state
        dispatcher.dispatch(ev, 1_700_000_000.0 + clock.now())
        clock.advance(10)


def test_memory_store_and_http_route() -> None:
    store = MemoryAlertStore()
    clock = FakeClock(start=0.0)
    engine = AlertEngine()
    state = engine.initial_state()
    for _ in range(7):
        ev = engine.evaluate(state, wait(45.0), clock.now())
        state = ev.state
        AlertDispatcher([store]).dispatch(ev, 1_700_000_000.0 + clock.now())
        clock.advance(10)
    app = FastAPI()
    app.include_router(alerts_router(store))
    client = TestClient(app)
    body = client.get("/v1/alerts").json()
    assert [a["alert"] for a in body["active"]] == ["queue_wait_high"]
    assert body["active"][0]["status"] == "firing"
    assert body["active"][0]["severity"] == "warning"
    assert body["recent"] == []
    ev = engine.evaluate(state, wait(1.0), clock.now())
    AlertDispatcher([store]).dispatch(ev, 1_700_000_000.0 + clock.now())
    body = client.get("/v1/alerts").json()
    assert body["active"] == []
    assert [(a["alert"], a["status"]) for a in body["recent"]] == [("queue_wait_high", "resolved")]
    # active_since is the start of the pending window in wall time (t=0 -> 1_700_000_000).
    assert body["recent"][0]["active_since"] == "2023-11-14T22:13:20+00:00"


class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        status = 500 if self.path == "/broken" else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: ClassVar[list[dict[str, Any]]] = []
    handler = type("Handler", (_Recorder,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)  # port 0: the OS picks a free one
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_posts_firing_and_resolved(
    webhook_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook_server
    dispatcher = AlertDispatcher([WebhookSink(url + "/hook")])
    _drive(AlertEngine(), FakeClock(start=0.0), dispatcher)
    assert [(r["alert"], r["status"]) for r in received] == [
        ("queue_wait_high", "firing"),
        ("queue_wait_high", "resolved"),
    ]
    assert received[0]["severity"] == "warning" and received[0]["value"] == 45.0
    assert received[0]["condition"] == "avg_wait_s > 30"
    assert dispatcher.failures == 0


def test_webhook_failure_is_translated_and_does_not_stop_other_sinks(
    webhook_server: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = webhook_server
    sink = WebhookSink(url + "/broken")
    engine = AlertEngine()
    ev = engine.evaluate(engine.initial_state(), QueueObservation(depth=1, oldest_age_s=500), 0.0)
    with pytest.raises(WebhookError, match="500"):
        sink.emit(ev.events[0], 0.0)
    store = MemoryAlertStore()
    dispatcher = AlertDispatcher([sink, store])
    with caplog.at_level(logging.ERROR):
        dispatcher.dispatch(ev, 0.0)
    assert dispatcher.failures == 1
    assert [a["alert"] for a in store.snapshot()["active"]] == ["queue_stalled"]


def test_log_sink(caplog: pytest.LogCaptureFixture) -> None:
    engine = AlertEngine()
    ev = engine.evaluate(engine.initial_state(), QueueObservation(depth=1, oldest_age_s=500), 0.0)
    with caplog.at_level(logging.INFO, logger="tenfold.autoscale.sinks"):
        AlertDispatcher([LogSink()]).dispatch(ev, 0.0)
    assert "alert queue_stalled firing [critical]: oldest_age_s > 120 (value 500)" in caplog.text


def test_seed_alerts_are_the_issue_thresholds() -> None:
    got = {
        (r.name, r.severity.value, r.metric.value, r.comparison.value, r.threshold)
        for r in SEED_ALERTS
    }
    assert got == {
        ("queue_wait_high", "warning", "avg_wait_s", ">", 30),
        ("queue_wait_critical", "critical", "avg_wait_s", ">", 120),
        ("queue_depth_critical", "critical", "depth", ">", 10_000),
        ("queue_stalled", "critical", "oldest_age_s", ">", 120),
    }
