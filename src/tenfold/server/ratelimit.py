"""Per-tenant rate limits on the HTTP API (auth on; ``tenfold.ratelimit`` decides).

Runs right after the API-key check: a caller over its limit is answered
``429 {"error": {"type": "rate_limited", ...}}`` with ``Retry-After`` before its body is
read. One limit for every tenant, counted in requests (an ``inputs`` list of many items is
one request: bound items per request with ``max_body_bytes``). Open routes (``/healthz``,
``/readyz``) carry no tenant and are never limited. If the limiter's store fails, the
request is admitted (fail open), the failure logged once per outage and counted in
``tenfold_rate_limit_errors_total``.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from tenfold.errors import RateLimited
from tenfold.ratelimit import Limiter, LimiterUnavailable, RateLimit
from tenfold.server.auth import tenant_of
from tenfold.server.errors import error_response

log = logging.getLogger("tenfold.ratelimit")


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, limiter: Limiter, limit: RateLimit, registry: CollectorRegistry
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.limit = limit
        self.limited = Counter(
            "tenfold_rate_limited_total",
            "Requests refused because their tenant was over its rate limit",
            ["tenant"],
            registry=registry,
        )
        self.errors = Counter(
            "tenfold_rate_limit_errors_total",
            "Requests admitted unchecked because the rate limiter's store failed",
            registry=registry,
        )
        self._outage = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = tenant_of(scope) if scope["type"] == "http" else None
        if tenant is None:
            await self.app(scope, receive, send)
            return
        try:
            decision = await self.limiter.acquire(tenant, self.limit)
        except LimiterUnavailable as exc:
            self.errors.inc()
            if not self._outage:
                self._outage = True
                log.warning("rate limits not enforced until the store is back: %s", exc)
            await self.app(scope, receive, send)
            return
        if self._outage:
            self._outage = False
            log.warning("rate limiter store is back: limits enforced again")
        if not decision.allowed:
            self.limited.labels(tenant).inc()
            error = RateLimited(
                f"tenant {tenant!r} is over its rate limit of {self.limit.rate_per_s:g} "
                f"requests/s (burst {self.limit.burst}); retry in {decision.retry_after_s:.2f} s",
                retry_after_s=decision.retry_after_s,
                details={
                    "rate_per_s": self.limit.rate_per_s,
                    "burst": self.limit.burst,
                    "retry_after_s": round(decision.retry_after_s, 3),
                },
            )
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
