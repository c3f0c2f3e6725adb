"""Caching at every layer: one backend protocol (memory, Redis) chosen by URL.

``tenfold.cache.redis`` is imported only when a ``redis://`` URL is used, so the
package works without the ``redis`` extra.
"""

from tenfold.cache.backend import CacheBackend, InvalidCacheURL, from_url
from tenfold.cache.memory import MemoryBackend, MemoryConfig

__all__ = ["CacheBackend", "InvalidCacheURL", "MemoryBackend", "MemoryConfig", "from_url"]
