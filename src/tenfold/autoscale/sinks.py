"""Where alert transitions go: the log, a webhook, and an in-memory store.

A sink takes one transition at a time (``emit(event, wall_time_s)``); the engine
works in monotonic seconds, the sinks speak wall-clock time, so the driver passes
both. A failing sink never stops the scaler: :class:`AlertDispatcher` logs and
counts the failure and goes on with the next sink.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from tenfold.autoscale.alerts import AlertEvaluation, AlertEvent, AlertStatus

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    def emit(self, event: AlertEvent, wall_time_s: float) -> None: ...


def _iso(wall_time_s: float) -> str:
    return datetime.fromtimestamp(wall_time_s, tz=UTC).isoformat(timespec="seconds")


def alert_payload(event: AlertEvent, wall_time_s: float) -> dict[str, Any]:
    """The JSON body of one transition (webhook and ``GET /v1/alerts`` share it)."""
    since_wall = wall_time_s - (event.at - event.active_since)
    body: dict[str, Any] = {
        "alert": event.rule.name,
        "severity": event.rule.severity.value,
        "status": event.status.value,
        "summary": event.rule.summary,
        "condition": event.rule.describe(),
        "for_s": event.rule.for_s,
        "value": event.value,
        "active_since": _iso(since_wall),
        "at": _iso(wall_time_s),
    }
    return body


class LogSink:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    def emit(self, event: AlertEvent, wall_time_s: float) -> None:
        level = logging.INFO if event.status is AlertStatus.RESOLVED else logging.WARNING
        self._log.log(
            level,
            "alert %s %s [%s]: %s (value %g)",
            event.rule.name,
            event.status.value,
            event.rule.severity.value,
            event.rule.describe(),
            event.value,
        )


class WebhookSink:
    """POSTs each transition as JSON. Network errors are raised as :class:`WebhookError`."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s)://, got {url!r}")
        self.url = url
        self.timeout_s = timeout_s

    def emit(self, event: AlertEvent, wall_time_s: float) -> None:
        import httpx  # only the webhook needs it

        try:
            response = httpx.post(
                self.url, json=alert_payload(event, wall_time_s), timeout=self.timeout_s
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise WebhookError(f"webhook {self.url} failed: {exc}") from exc


class WebhookError(Exception):
    """A webhook POST failed (connection, timeout or non-2xx)."""


class MemoryAlertStore:
    """Firing alerts and the most recent resolved ones; backs ``GET /v1/alerts``. Thread-safe."""

    def __init__(self, *, recent: int = 100) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, dict[str, Any]] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)

    def emit(self, event: AlertEvent, wall_time_s: float) -> None:
        record = alert_payload(event, wall_time_s)
        with self._lock:
            if event.status is AlertStatus.FIRING:
                self._active[event.rule.name] = record
            elif event.status is AlertStatus.RESOLVED:
                self._active.pop(event.rule.name, None)
                self._recent.appendleft(record)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {"active": list(self._active.values()), "recent": list(self._recent)}


class AlertDispatcher:
    def __init__(self, sinks: list[AlertSink]) -> None:
        self.sinks = sinks
        self.failures = 0

    def dispatch(self, evaluation: AlertEvaluation, wall_time_s: float) -> None:
        for event in evaluation.events:
            for sink in self.sinks:
                try:
                    sink.emit(event, wall_time_s)
                except Exception:
                    # An alert sink must never take the scaler down with it.
                    self.failures += 1
                    log.exception("alert sink %r failed on %s", sink, event.rule.name)
