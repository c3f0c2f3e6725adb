"""``GET /v1/alerts``: the firing alerts and the recently resolved ones.

The lead mounts it: ``app.include_router(alerts_router(store))``.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from tenfold.autoscale.sinks import MemoryAlertStore


class AlertOut(BaseModel):
    alert: str
    severity: str
    status: str
    summary: str
    condition: str
    for_s: float
    value: float
    active_since: str
    at: str


class AlertsOut(BaseModel):
    active: list[AlertOut]
    recent: list[AlertOut]


def alerts_router(store: MemoryAlertStore) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/alerts", response_model=AlertsOut, tags=["alerts"])
    def get_alerts() -> AlertsOut:
        return AlertsOut.model_validate(store.snapshot())

    return router
