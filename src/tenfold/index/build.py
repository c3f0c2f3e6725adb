"""Build and refresh an index: embed in batches, normalise, publish a generation.

``refresh`` re-embeds only items whose content hash is new or changed (or
everything, if the model changed), reuses the stored vectors of the others,
drops removed ids, and publishes a new generation atomically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tenfold.errors import InvalidInput
from tenfold.index.catalog import Item
from tenfold.index.embedder import Embedder, Matrix
from tenfold.index.store import (
    Entry,
    Manifest,
    current_generation_dir,
    next_generation,
    publish_generation,
    read_generation,
    writer_lock,
)

#: ``on_progress(done, total)`` after each embedded batch (the CLI draws a rich bar).
Progress = Callable[[int, int], None]
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True, slots=True)
class RefreshPlan:
    reuse: tuple[str, ...]
    embed: tuple[Item, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BuildReport:
    name: str
    generation: int
    path: Path
    count: int
    embedded: int
    reused: int
    removed: int
    seconds: float


def plan_refresh(
    old_hashes: Mapping[str, str], items: Sequence[Item], *, model_changed: bool
) -> RefreshPlan:
    """Which items to embed, which vectors to reuse, which ids are gone. Pure."""
    reuse: list[str] = []
    embed: list[Item] = []
    for item in items:
        if not model_changed and old_hashes.get(item.id) == item.content_hash:
            reuse.append(item.id)
        else:
            embed.append(item)
    current = {item.id for item in items}
    removed = tuple(sorted(i for i in old_hashes if i not in current))
    return RefreshPlan(tuple(reuse), tuple(embed), removed)


def normalize(vectors: Matrix) -> Matrix:
    """L2-normalise rows so inner product = cosine; reject zero and non-finite rows."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.all(np.isfinite(vectors)):
        raise ValueError("embedding contains NaN or infinity")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("embedding has zero length; cannot normalise it")
    out: Matrix = (vectors / norms).astype(np.float32)
    return out


def embed_in_batches(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
) -> Matrix:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    parts: list[Matrix] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        matrix = embedder.embed(chunk)
        if matrix.shape[0] != len(chunk):
            raise ValueError(f"embedder returned {matrix.shape[0]} rows for {len(chunk)} texts")
        parts.append(normalize(matrix))
        if on_progress is not None:
            on_progress(start + len(chunk), len(texts))
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def build_index(
    root: Path,
    name: str,
    items: Sequence[Item],
    embedder: Embedder,
    *,
    items_path: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
    incremental: bool = False,
) -> BuildReport:
    """Embed every item and publish a new generation (replacing any existing index).

    ``incremental`` (what :func:`refresh_index` passes) re-embeds only new or changed
    items and reuses the stored vectors of the others; it raises :class:`IndexNotFound`
    if the index was never built.
    """
    started = time.perf_counter()
    with writer_lock(root, name) as base:
        old_hashes: dict[str, str] = {}
        old_rows: dict[str, int] = {}
        old_vectors: Matrix | None = None
        model_changed = True
        stored_items_path = ""
        if incremental:
            # Read under the lock: the generation we diff against is the one we replace.
            old = read_generation(current_generation_dir(root, name))
            stored_items_path = old.manifest.items_path
            old_hashes = {e.id: e.hash for e in old.entries}
            old_rows = {e.id: i for i, e in enumerate(old.entries)}
            old_vectors = old.vectors()
            model_changed = (old.manifest.model_name, old.manifest.model_version) != (
                embedder.model_name,
                embedder.model_version,
            )
        plan = plan_refresh(old_hashes, items, model_changed=model_changed)
        fresh = embed_in_batches(
            embedder,
            [item.text for item in plan.embed],
            batch_size=batch_size,
            on_progress=on_progress,
        )
        dim = _dimension(fresh, old_vectors, plan)
        fresh_rows = {item.id: i for i, item in enumerate(plan.embed)}
        vectors = np.zeros((len(items), dim), dtype=np.float32)
        for row, item in enumerate(items):
            if item.id in fresh_rows:
                vectors[row] = fresh[fresh_rows[item.id]]
            else:
                assert old_vectors is not None  # reuse implies an old generation
                vectors[row] = old_vectors[old_rows[item.id]]
        manifest = Manifest(
            name=name,
            generation=next_generation(base),
            model_target=embedder.target,
            model_name=embedder.model_name,
            model_version=embedder.model_version,
            dim=dim,
            count=len(items),
            items_path=str(items_path.resolve()) if items_path else stored_items_path,
            created_unix_s=time.time(),
        )
        path = publish_generation(
            base, manifest, vectors, [Entry(i.id, i.content_hash) for i in items]
        )
    return BuildReport(
        name=name,
        generation=manifest.generation,
        path=path,
        count=len(items),
        embedded=len(plan.embed),
        reused=len(plan.reuse),
        removed=len(plan.removed),
        seconds=time.perf_counter() - started,
    )


def refresh_index(
    root: Path, name: str, items: Sequence[Item], embedder: Embedder, **options: Any
) -> BuildReport:
    """Re-embed only new or changed items: :func:`build_index` with ``incremental=True``
    (same keyword options); raises :class:`IndexNotFound` if never built."""
    return build_index(root, name, items, embedder, incremental=True, **options)


def _dimension(fresh: Matrix, old: Matrix | None, plan: RefreshPlan) -> int:
    if plan.embed:
        if old is not None and plan.reuse and old.shape[1] != fresh.shape[1]:
            raise ValueError(
                f"the model now returns {fresh.shape[1]} dimensions, the index has {old.shape[1]}"
            )
        return int(fresh.shape[1])
    if old is not None and old.shape[1] > 0:
        return int(old.shape[1])
    raise InvalidInput("cannot build an index from an empty catalog")
