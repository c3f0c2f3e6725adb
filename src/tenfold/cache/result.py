"""Exact result cache with single-flight.

Key: SHA-256 hex of the canonical JSON of ``[key-schema version, tenant or "",
model name, model version, input, params]`` with sorted keys, under the
per-model prefix ``{namespace}:r:v1:{model}:`` so that :meth:`ResultCache.
purge_model` can drop one model. A new model version changes every key. Inputs
with no canonical JSON (non-JSON values, and NaN/Infinity, which orjson writes as
``null``) get no key: they are computed and never stored. Only successes are stored
(orjson bytes); an error reaches every waiter of its flight and is never cached,
except that a leader's *per-request* error (its own deadline, load shedding) sends
its followers to try again (see :data:`PER_REQUEST_ERRORS`).

Call form (HTTP predict path)::

    res = await cache.get_or_compute(
        model="embed", version="3", input=body["input"], params=body.get("params"),
        tenant=api_key_scope, compute=lambda: run_model(...), bypass=no_cache,
    )
    headers["X-Tenfold-Cache"] = res.header      # "hit" | "miss"
    return res.value
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from tenfold.cache.backend import CacheBackend
from tenfold.cache.keys import DEFAULT_NAMESPACE, KEY_SCHEMA_VERSION, model_prefix
from tenfold.cache.resilient import ResilientBackend
from tenfold.cache.stats import LayerStats, Outcome
from tenfold.errors import DeadlineExceeded, Overloaded

__all__ = [
    "DEFAULT_RESULT_TTL_S",
    "MAX_REJOINS",
    "PER_REQUEST_ERRORS",
    "CachedResult",
    "NotCanonicalizable",
    "ResultCache",
    "ResultCacheConfig",
    "canonical_json",
    "no_cache_requested",
]

log = logging.getLogger(__name__)

DEFAULT_RESULT_TTL_S = 300.0
LAYER = "r"
# Sentinel for "not in the cache": ``None`` is a valid cached value.
_MISSING: Any = object()
#: Errors that say something about the *leader's request* (its own deadline, shed by
#: admission control), not about the input: a follower would maybe have succeeded,
#: so it tries again instead of receiving them. Anything else reaches every follower.
PER_REQUEST_ERRORS: tuple[type[BaseException], ...] = (DeadlineExceeded, Overloaded)
#: How often one follower starts over after leaders failed with a per-request error
#: before it takes the error as its own: a model that makes every request time out
#: costs at most this many extra computations per burst, not one per follower.
MAX_REJOINS = 2


class NotCanonicalizable(TypeError):
    """A value with no canonical JSON form (so no cache key): it is computed uncached."""


@dataclass(frozen=True, slots=True)
class ResultCacheConfig:
    ttl_s: float = DEFAULT_RESULT_TTL_S
    # Per-model TTL overrides, by model name.
    model_ttl_s: Mapping[str, float] = field(default_factory=dict)
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        for name, ttl in [("default", self.ttl_s), *self.model_ttl_s.items()]:
            if ttl <= 0:
                raise ValueError(f"result cache ttl_s for {name} must be > 0, got {ttl}")
        if not self.namespace or ":" in self.namespace:
            raise ValueError(f"namespace must be non-empty without ':', got {self.namespace!r}")

    def ttl_for(self, model: str) -> float:
        return self.model_ttl_s.get(model, self.ttl_s)


@dataclass(frozen=True, slots=True)
class CachedResult:
    value: Any
    outcome: Outcome

    @property
    def header(self) -> str:
        """``X-Tenfold-Cache`` value: ``hit`` when no model call was made for this request."""
        return "hit" if self.outcome in (Outcome.HIT, Outcome.COALESCED) else "miss"


def no_cache_requested(cache_control: str | None) -> bool:
    """True when a ``Cache-Control`` request header carries the ``no-cache`` directive."""
    if not cache_control:
        return False
    return any(
        part.split("=", 1)[0].strip().lower() == "no-cache" for part in cache_control.split(",")
    )


def _retrieve(flight: asyncio.Future[Any]) -> None:
    if not flight.cancelled():
        flight.exception()


def canonical_json(obj: Any, *, known_nulls: int = 0) -> bytes:
    """JSON with sorted keys at every depth.

    Raises ``TypeError`` for non-JSON values, and :class:`NotCanonicalizable` (a
    ``TypeError``) for NaN and +-Infinity: orjson writes them as ``null``, so ``[NaN]``,
    ``[Infinity]`` and ``[null]`` would otherwise share one key. ``known_nulls``: how many
    ``null`` the caller itself put in ``obj`` (they need no walk).
    """
    out = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    # A non-finite float can only hide behind a null: the walk runs only then.
    if out.count(b"null") > known_nulls and _has_non_finite(obj):
        raise NotCanonicalizable("NaN or Infinity has no JSON form (orjson writes null)")
    return out


def _has_non_finite(obj: Any) -> bool:
    """Whether ``obj`` holds a NaN or an infinity anywhere orjson would serialize it.

    Depth needs no guard: orjson already refused anything nested deeper than 255.
    """
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if obj is None or isinstance(obj, str | int | bytes):
        return False
    if isinstance(obj, dict):
        return any(_has_non_finite(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_has_non_finite(v) for v in obj)
    if isinstance(obj, np.ndarray | np.generic):
        return obj.dtype.kind in "fc" and not bool(np.isfinite(obj).all())
    if isinstance(obj, enum.Enum):
        return _has_non_finite(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return any(_has_non_finite(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return False


class ResultCache:
    """``ResultCache(ResilientBackend(from_url(url)), config=ResultCacheConfig(ttl_s=300))``."""

    def __init__(
        self,
        backend: CacheBackend,
        *,
        config: ResultCacheConfig | None = None,
        stats: LayerStats | None = None,
    ) -> None:
        self.backend = backend
        self.config = config or ResultCacheConfig()
        if stats is None:
            stats = backend.stats if isinstance(backend, ResilientBackend) else LayerStats("result")
        self.stats = stats
        self._flights: dict[str, asyncio.Future[Any]] = {}
        # Bumped by purge_model: a computation that started before a purge must not
        # write its (possibly stale) answer back after it.
        self._generation: dict[str, int] = {}

    def key(
        self,
        model: str,
        version: str,
        input: Any,
        params: Any = None,
        tenant: str | None = None,
    ) -> str:
        """The backend key; raises ``TypeError`` when input or params have no canonical JSON
        (non-JSON values, NaN, Infinity)."""
        material = canonical_json(
            [KEY_SCHEMA_VERSION, tenant or "", model, version, input, params],
            known_nulls=1 if params is None else 0,  # the usual case: no walk of the input
        )
        digest = hashlib.sha256(material).hexdigest()
        return model_prefix(self.config.namespace, LAYER, model) + digest

    async def get_or_compute(
        self,
        *,
        model: str,
        version: str,
        input: Any,
        compute: Callable[[], Awaitable[Any]],
        params: Any = None,
        tenant: str | None = None,
        bypass: bool = False,
        ttl_s: float | None = None,
    ) -> CachedResult:
        """The cached value, or ``await compute()`` once for all concurrent identical misses.

        ``bypass=True`` (``Cache-Control: no-cache``) skips the lookup and the flight,
        computes, and stores a success so that later requests see the fresh value.
        Exceptions from ``compute`` propagate to every waiter and are never stored, except
        that a follower whose leader failed with one of :data:`PER_REQUEST_ERRORS` starts
        over (up to :data:`MAX_REJOINS` times), so that its own request decides.
        """
        try:
            key = self.key(model, version, input, params, tenant)
        except TypeError:
            # Not canonicalizable (incl. NaN/Infinity): no key, so no caching, but it runs.
            self.stats.count(Outcome.BYPASS)
            return CachedResult(await compute(), Outcome.BYPASS)
        ttl = ttl_s if ttl_s is not None else self.config.ttl_for(model)
        if bypass:
            self.stats.count(Outcome.BYPASS)
            value = await self._compute_and_store(model, key, compute, ttl)
            return CachedResult(value, Outcome.BYPASS)
        rejoins = 0
        while (flight := self._flights.get(key)) is not None:
            # Counted on joining, so that stats show waiters while the flight is out.
            self.stats.count(Outcome.COALESCED)
            try:
                value, _ = await asyncio.shield(flight)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if flight.cancelled() and (task is None or not task.cancelling()):
                    # The leader was cancelled during its lookup: start over.
                    self.stats.coalesced -= 1
                    continue
                raise
            except PER_REQUEST_ERRORS:
                # The leader's own deadline or admission failed it, not the input: this
                # request may well succeed, so start over (bounded, see MAX_REJOINS).
                if rejoins >= MAX_REJOINS:
                    raise
                rejoins += 1
                self.stats.coalesced -= 1
                continue
            return CachedResult(value, Outcome.COALESCED)
        # Registered before the first await, so every identical request from here on joins it.
        # A plain future, not a task: the hit path stays one coroutine, with no scheduling.
        leader: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Mark an exception no follower awaited as retrieved: it already reached the leader.
        leader.add_done_callback(_retrieve)
        self._flights[key] = leader
        try:
            value = await self._lookup(key)
        except BaseException:
            # Only cancellation gets here (a resilient backend never raises): followers retry.
            self._land(key, leader)
            leader.cancel()
            raise
        if value is not _MISSING:
            self._land(key, leader)
            leader.set_result((value, Outcome.HIT))
            self.stats.count(Outcome.HIT)
            return CachedResult(value, Outcome.HIT)
        self.stats.count(Outcome.MISS)
        # The computation runs as its own task, shielded: a cancelled leader (client gone)
        # must not cancel the answer its followers are waiting for.
        work = asyncio.ensure_future(self._compute_and_store(model, key, compute, ttl))
        work.add_done_callback(lambda done: self._finish(key, leader, done))
        value = await asyncio.shield(work)
        return CachedResult(value, Outcome.MISS)

    def _land(self, key: str, flight: asyncio.Future[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _finish(self, key: str, flight: asyncio.Future[Any], work: asyncio.Future[Any]) -> None:
        self._land(key, flight)
        if work.cancelled():
            flight.cancel()
        elif (exc := work.exception()) is not None:
            flight.set_exception(exc)
        else:
            flight.set_result((work.result(), Outcome.MISS))

    async def _lookup(self, key: str) -> Any:
        (raw,) = await self.backend.get_many([key])
        if raw is None:
            return _MISSING
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("result cache: undecodable entry %s, recomputing", key)
            return _MISSING

    async def _compute_and_store(
        self, model: str, key: str, compute: Callable[[], Awaitable[Any]], ttl_s: float
    ) -> Any:
        generation = self._generation.get(model, 0)
        started = time.perf_counter()
        value = await compute()
        self.stats.add_compute(time.perf_counter() - started, 1)
        try:
            encoded = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            log.debug("result cache: output for %s is not JSON-serializable; not cached", key)
            return value
        if self._generation.get(model, 0) == generation:
            await self.backend.set_many({key: encoded}, ttl_s)
        return value

    async def purge_model(self, model: str) -> int | None:
        """Delete every cached result of ``model`` (all versions and tenants).

        Returns how many entries were deleted, or ``None`` when the backend was
        unavailable (answer 503 so that the operator retries).
        """
        self._generation[model] = self._generation.get(model, 0) + 1
        prefix = model_prefix(self.config.namespace, LAYER, model)
        if isinstance(self.backend, ResilientBackend):
            return await self.backend.try_delete_prefix(prefix)
        return await self.backend.delete_prefix(prefix)
