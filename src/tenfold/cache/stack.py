"""The cache stack a server runs with: every layer built from one URL.

``tenfold serve --cache URL`` -> ``CacheStack.from_url(URL, ...)``;
``--no-cache`` -> ``CacheStack.disabled()`` (every layer is ``None``: call the
model directly). Each layer gets its own backend built from the same URL, so
``memory://`` bounds apply per layer and on Redis the layers share the server
under distinct key prefixes. Every backend is wrapped in
:class:`~tenfold.cache.resilient.ResilientBackend`: a cache outage is a miss.

Call forms::

    stack = CacheStack.from_url("redis://127.0.0.1:6379/0", registry=registry)
    stack.result                                   # ResultCache | None
    stack.embedding("embed", "1")                  # EmbeddingCache | None
    stack.backend("features")                      # ResilientBackend | None, for other layers
    stack.stats(s_per_item={"result": 0.012}, usd_per_gpu_hour=1.006)
    await stack.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client.registry import CollectorRegistry

from tenfold.cache.backend import from_url
from tenfold.cache.embedding import DEFAULT_EMBEDDING_TTL_S, EmbeddingCache
from tenfold.cache.embedding import LAYER as EMBEDDING_LAYER
from tenfold.cache.keys import DEFAULT_NAMESPACE, model_prefix
from tenfold.cache.metrics import CacheMetrics
from tenfold.cache.resilient import ResilientBackend, ResilientConfig
from tenfold.cache.result import ResultCache, ResultCacheConfig
from tenfold.cache.stats import LayerStats
from tenfold.clock import Clock, SystemClock

__all__ = ["DEFAULT_CACHE_URL", "CacheSettings", "CacheStack"]

DEFAULT_CACHE_URL = "memory://"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    result: ResultCacheConfig = field(default_factory=ResultCacheConfig)
    embedding_ttl_s: float = DEFAULT_EMBEDDING_TTL_S
    resilient: ResilientConfig = field(default_factory=ResilientConfig)
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        if self.embedding_ttl_s <= 0:
            raise ValueError(f"embedding_ttl_s must be > 0, got {self.embedding_ttl_s}")


class CacheStack:
    """All cache layers of one server; build with :meth:`from_url` or :meth:`disabled`."""

    def __init__(
        self,
        url: str | None,
        *,
        settings: CacheSettings | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.url = url
        self.settings = settings or CacheSettings()
        self._clock: Clock = clock or SystemClock()
        self.metrics = CacheMetrics(registry)
        self._backends: dict[str, ResilientBackend] = {}
        self._embeddings: dict[tuple[str, str], EmbeddingCache] = {}
        self.result: ResultCache | None = None
        if url is not None:
            # Fail at startup on a bad URL, not at the first request.
            result_backend = self._open("result")
            # One namespace for every layer: the stack's wins over the result config's.
            result_config = replace(self.settings.result, namespace=self.settings.namespace)
            self.result = ResultCache(result_backend, config=result_config)

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_CACHE_URL,
        *,
        settings: CacheSettings | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> CacheStack:
        """Raises :class:`~tenfold.cache.backend.InvalidCacheURL` for a bad URL."""
        return cls(url, settings=settings, clock=clock, registry=registry)

    @classmethod
    def disabled(cls, *, registry: CollectorRegistry | None = None) -> CacheStack:
        """``--no-cache``: no layer, no backend, no cache metrics samples."""
        return cls(None, registry=registry)

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def _open(self, layer: str) -> ResilientBackend:
        assert self.url is not None
        backend = self._backends.get(layer)
        if backend is None:
            raw = from_url(self.url, clock=self._clock)
            backend = ResilientBackend(
                raw, stats=LayerStats(layer), config=self.settings.resilient, clock=self._clock
            )
            self._backends[layer] = backend
            self.metrics.track(backend.stats, backend)
        return backend

    def backend(self, layer: str) -> ResilientBackend | None:
        """The resilient backend of ``layer`` (created on first use), or ``None`` when disabled."""
        return self._open(layer) if self.enabled else None

    def embedding(
        self, model: str, version: str, *, ttl_s: float | None = None
    ) -> EmbeddingCache | None:
        """The embedding cache of one model version (shared ``embedding`` layer)."""
        if not self.enabled:
            return None
        cache = self._embeddings.get((model, version))
        if cache is None:
            cache = EmbeddingCache(
                self._open("embedding"),
                model=model,
                version=version,
                ttl_s=ttl_s if ttl_s is not None else self.settings.embedding_ttl_s,
                namespace=self.settings.namespace,
            )
            self._embeddings[(model, version)] = cache
        return cache

    async def purge_model(self, model: str) -> dict[str, int | None]:
        """``DELETE /v1/models/{model}/cache``: drop the model's results and embeddings.

        Per layer: entries deleted, or ``None`` where the backend was unavailable
        (answer 503 so the operator retries). Empty when the cache is disabled.
        Every layer the stack can serve is purged, opened here if this process has
        not used it yet: on a shared backend (Redis) another process may have filled it.
        """
        out: dict[str, int | None] = {}
        if self.result is not None:
            out["result"] = await self.result.purge_model(model)
        if self.enabled:
            prefix = model_prefix(self.settings.namespace, EMBEDDING_LAYER, model)
            out["embedding"] = await self._open("embedding").try_delete_prefix(prefix)
        return out

    def stats(
        self,
        *,
        s_per_item: Mapping[str, float] | None = None,
        usd_per_gpu_hour: float = 0.0,
    ) -> dict[str, Any]:
        """``/v1/stats`` ``cache`` section: ``{"enabled", "backend", "layers": {...}}``."""
        return {
            "enabled": self.enabled,
            "backend": _redact(self.url),
            "layers": self.metrics.snapshot(
                s_per_item=s_per_item, usd_per_gpu_hour=usd_per_gpu_hour
            ),
        }

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()


def _redact(url: str | None) -> str | None:
    """The URL without its password, fit for a stats page."""
    if url is None or "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
