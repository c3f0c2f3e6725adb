"""Embedding cache: per-item float32 vectors, looked up for a whole batch at once.

An item is keyed by its id when the caller gives one (the catalog knows when an
item changes; ids are trusted: an id sent with other content reads, or writes, that
id's vector), else by the SHA-256 of its content (:func:`content_hash`); both under
the model name and version, so a new model version never reads old vectors, and under
the caller's tenant when auth is on (a shared vector would tell one tenant, by its hit,
what another embedded). An item
whose content has no canonical form (NaN, a non-JSON object) is computed uncached.
One ``get_many`` per batch, ``compute`` sees only the distinct misses (in first-seen
order), one ``set_many`` stores them, and the rows come back in the order of ``items``.

Call form::

    cache = EmbeddingCache(backend, model="embed", version="1")
    vectors = await cache.embed_many(texts, encode_batch)   # (len(texts), dim) float32
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tenfold.cache.backend import CacheBackend
from tenfold.cache.codec import CodecError, decode_array, encode_array
from tenfold.cache.keys import DEFAULT_NAMESPACE, model_prefix, quote_part
from tenfold.cache.resilient import ResilientBackend
from tenfold.cache.result import canonical_json
from tenfold.cache.stats import LayerStats, Outcome

__all__ = ["DEFAULT_EMBEDDING_TTL_S", "EmbeddingCache", "content_hash"]

log = logging.getLogger(__name__)

DEFAULT_EMBEDDING_TTL_S = 24 * 3600.0
LAYER = "e"

# Usually str (text) or bytes (images, audio); any JSON value works.
Item = Any
Vectors = npt.NDArray[np.float32]
Compute = Callable[[list[Item]], Any]


def content_hash(item: Item) -> str:
    """SHA-256 hex of an item, tagged by kind so that no two kinds share a hash.

    ``s`` + UTF-8 for ``str`` (lone surrogates kept, "surrogatepass"), ``x`` + the bytes
    for ``bytes``/``bytearray``, ``j`` + canonical JSON for anything else (so ``"3"``,
    ``3``, ``[0, 0, 0]`` and ``b"\0\0\0"`` all differ). Raises ``TypeError`` for an
    item with no canonical JSON (see :func:`tenfold.cache.result.canonical_json`).
    """
    if isinstance(item, str):
        data = b"s" + item.encode("utf-8", "surrogatepass")
    elif isinstance(item, bytes | bytearray):
        # Not "b": the old fallback wrote ints and lists of ints under "b" + bytes(item).
        data = b"x" + bytes(item)
    else:
        data = b"j" + canonical_json(item)
    return hashlib.sha256(data).hexdigest()


class EmbeddingCache:
    """``EmbeddingCache(backend, model="embed", version="1", ttl_s=86400)``."""

    def __init__(
        self,
        backend: CacheBackend,
        *,
        model: str,
        version: str,
        ttl_s: float = DEFAULT_EMBEDDING_TTL_S,
        namespace: str = DEFAULT_NAMESPACE,
        stats: LayerStats | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.backend = backend
        self.model = model
        self.version = version
        self.ttl_s = ttl_s
        self.namespace = namespace
        if stats is None:
            stats = (
                backend.stats if isinstance(backend, ResilientBackend) else LayerStats("embedding")
            )
        self.stats = stats
        self._prefix = model_prefix(namespace, LAYER, model) + quote_part(version) + ":"

    def key(self, item: Item, item_id: str | None = None, tenant: str | None = None) -> str:
        """Raises ``TypeError`` when there is no id and the content has no canonical form."""
        # Quoted, a tenant holds no ":", so "t:{tenant}:" never reads as an "id:"/"h:" key.
        prefix = self._prefix if tenant is None else f"{self._prefix}t:{quote_part(tenant)}:"
        if item_id is not None:
            return f"{prefix}id:{quote_part(item_id)}"
        return f"{prefix}h:{content_hash(item)}"

    def _key_or_none(self, item: Item, item_id: str | None, tenant: str | None) -> str | None:
        try:
            return self.key(item, item_id, tenant)
        except TypeError:
            return None

    async def embed_many(
        self,
        items: Sequence[Item],
        compute: Compute,
        *,
        ids: Sequence[str | None] | None = None,
        tenant: str | None = None,
    ) -> Vectors:
        """Rows for ``items`` in order: cached ones from one lookup, the rest from ``compute``.

        ``compute(missing_items)`` (sync or async) returns one vector per item it is
        given, as an ``(n, dim)`` array or a sequence of 1-d arrays. Its exceptions
        propagate and nothing of that batch is stored. Items without a key (no id and
        no canonical form) are computed every time and never stored. ``tenant`` (auth on)
        scopes every key, by id or by content.
        """
        if ids is not None and len(ids) != len(items):
            raise ValueError(f"{len(ids)} ids for {len(items)} items")
        keys = [
            self._key_or_none(item, None if ids is None else ids[i], tenant)
            for i, item in enumerate(items)
        ]
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        cacheable = [key for key in keys if key is not None]
        found = iter(await self.backend.get_many(cacheable) if cacheable else [])
        rows: list[npt.NDArray[Any] | None] = [None] * len(items)
        # Distinct missing keys -> positions, in first-seen order (dict order); an
        # uncacheable item is missing under its position (an int: never stored).
        missing: dict[str | int, list[int]] = {}
        uncacheable = 0
        for i, key in enumerate(keys):
            if key is None:
                missing[i] = [i]
                uncacheable += 1
                continue
            value = next(found)
            if value is not None:
                try:
                    vec = decode_array(value)
                except CodecError as exc:
                    log.warning("embedding cache: bad entry %s (%s); recomputing", key, exc)
                else:
                    if vec.ndim == 1:
                        rows[i] = vec
                        continue
            missing.setdefault(key, []).append(i)
        hits = sum(r is not None for r in rows)
        duplicates = sum(len(p) - 1 for p in missing.values())
        self.stats.count(Outcome.HIT, hits)
        self.stats.count(Outcome.MISS, len(missing) - uncacheable)
        self.stats.count(Outcome.BYPASS, uncacheable)
        self.stats.count(Outcome.COALESCED, duplicates)
        if missing:
            todo = [items[positions[0]] for positions in missing.values()]
            computed = await self._compute(compute, todo)
            fresh: dict[str, bytes] = {}
            for (slot, positions), vec in zip(missing.items(), computed, strict=True):
                for i in positions:
                    rows[i] = vec
                if isinstance(slot, str):
                    fresh[slot] = encode_array(vec)
            if fresh:
                await self.backend.set_many(fresh, self.ttl_s)
        return np.stack([r for r in rows if r is not None]).astype(np.float32, copy=False)

    async def _compute(self, compute: Compute, todo: list[Item]) -> list[Vectors]:
        started = time.perf_counter()
        out = compute(todo)
        if inspect.isawaitable(out):
            out = await out
        self.stats.add_compute(time.perf_counter() - started, len(todo))
        vectors = [np.asarray(v, dtype=np.float32) for v in out]
        if len(vectors) != len(todo):
            raise ValueError(f"compute returned {len(vectors)} vectors for {len(todo)} items")
        if any(v.ndim != 1 for v in vectors):
            raise ValueError("compute must return one 1-d vector per item")
        return vectors

    async def purge(self) -> int:
        """Delete every cached vector of this model (all versions)."""
        prefix = model_prefix(self.namespace, LAYER, self.model)
        return await self.backend.delete_prefix(prefix)
