"""Caching at every layer: one backend protocol (memory, Redis) chosen by URL.

``tenfold.cache.redis`` is imported only when a ``redis://`` URL is used, so the
package works without the ``redis`` extra. Start at :class:`CacheStack`.
"""

from tenfold.cache.backend import CacheBackend, InvalidCacheURL, from_url
from tenfold.cache.embedding import EmbeddingCache
from tenfold.cache.memory import MemoryBackend, MemoryConfig
from tenfold.cache.metrics import CacheMetrics
from tenfold.cache.resilient import ResilientBackend, ResilientConfig
from tenfold.cache.result import (
    CachedResult,
    ResultCache,
    ResultCacheConfig,
    no_cache_requested,
)
from tenfold.cache.stack import CacheSettings, CacheStack
from tenfold.cache.stats import LayerStats, Outcome

__all__ = [
    "CacheBackend",
    "CacheMetrics",
    "CacheSettings",
    "CacheStack",
    "CachedResult",
    "EmbeddingCache",
    "InvalidCacheURL",
    "LayerStats",
    "MemoryBackend",
    "MemoryConfig",
    "Outcome",
    "ResilientBackend",
    "ResilientConfig",
    "ResultCache",
    "ResultCacheConfig",
    "from_url",
    "no_cache_requested",
]
