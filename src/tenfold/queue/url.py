"""``from_url``: the one place a queue URL becomes a backend.

::

    sqlite:///relative/queue.db            sqlite:////abs/path/queue.db
    redis://127.0.0.1:6379/0

Query parameters (all optional) set the shared :class:`QueueConfig`:
``max_attempts``, ``retry_base_ms``, ``retry_max_ms``, ``result_ttl_s``,
``stats_window_s``; SQLite also takes ``synchronous`` (normal|full) and
``poll_interval_ms``; Redis takes ``prefix`` (key prefix, default ``tenfold``).
Every process that shares a queue should use the same URL.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from tenfold.queue.job import QueueConfig
from tenfold.queue.policy import RetryPolicy
from tenfold.queue.wallclock import NowClock

if TYPE_CHECKING:
    from tenfold.queue.backend import QueueBackend

_COMMON = {"max_attempts", "retry_base_ms", "retry_max_ms", "result_ttl_s", "stats_window_s"}
_SQLITE = _COMMON | {"synchronous", "poll_interval_ms"}
_REDIS = _COMMON | {"prefix"}


def config_from_params(params: dict[str, str], base: QueueConfig | None = None) -> QueueConfig:
    base = base or QueueConfig()
    retry = base.retry
    try:
        retry = RetryPolicy(
            max_attempts=int(params.get("max_attempts", retry.max_attempts)),
            base_delay_s=float(params.get("retry_base_ms", retry.base_delay_s * 1000)) / 1000,
            max_delay_s=float(params.get("retry_max_ms", retry.max_delay_s * 1000)) / 1000,
            multiplier=retry.multiplier,
            jitter=retry.jitter,
        )
        return QueueConfig(
            retry=retry,
            result_ttl_s=float(params.get("result_ttl_s", base.result_ttl_s)),
            stats_window_s=float(params.get("stats_window_s", base.stats_window_s)),
            poll_interval_ms=float(params.get("poll_interval_ms", base.poll_interval_ms)),
        )
    except ValueError as exc:
        raise ValueError(f"bad queue URL parameter: {exc}") from exc


def from_url(
    url: str,
    *,
    config: QueueConfig | None = None,
    clock: NowClock | None = None,
    rng: random.Random | None = None,
) -> QueueBackend:
    """The backend for ``url``. Nothing connects until the first operation."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        _reject_unknown(params, _SQLITE, url)
        from tenfold.queue.sqlite import SqliteQueue

        # sqlite:///rel/path -> "rel/path"; sqlite:////abs/path -> "/abs/path"
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise ValueError(
                f"SQLite queue URL must look like sqlite:///path/queue.db, got {url!r}"
            )
        return SqliteQueue(
            path,
            config=config_from_params(params, config),
            clock=clock,
            rng=rng,
            synchronous=params.get("synchronous", "normal"),
        )
    if parts.scheme in ("redis", "rediss", "unix"):
        _reject_unknown(params, _REDIS, url)
        from tenfold.queue.redis_streams import RedisQueue

        conn_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return RedisQueue(
            conn_url,
            prefix=params.get("prefix", "tenfold"),
            config=config_from_params(params, config),
            clock=clock,
            rng=rng,
        )
    raise ValueError(
        f"unknown queue URL scheme {parts.scheme!r} in {url!r}: "
        "use sqlite:///path/queue.db or redis://host:port/db"
    )


def _reject_unknown(params: dict[str, str], allowed: set[str], url: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"unknown queue URL parameter(s) {', '.join(unknown)} in {url!r}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
