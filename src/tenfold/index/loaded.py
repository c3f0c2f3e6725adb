"""A loaded index that answers searches and follows the on-disk generation.

::

    index = LoadedIndex(root, "docs", embedder_for=lambda target: my_embedder)
    index.search("how do I refresh an index?", k=5)   # -> [("docs-12", 0.71), ...]
    index.search([0.1, 0.3, ...], k=5)                 # a vector of the index's dimension

Each search first checks (at most every ``check_interval_s``, on the injected
clock) whether ``current`` points at a newer generation and loads it. A
search runs against one immutable :class:`Generation` snapshot, so a search in
flight during a reload finishes on the generation it started with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tenfold.clock import Clock, SystemClock
from tenfold.errors import InvalidInput
from tenfold.index.build import normalize
from tenfold.index.embedder import Embedder, Matrix
from tenfold.index.store import Generation, current_generation_dir, load_current

#: Largest ``k`` a search may ask for.
MAX_K = 1000
EmbedderFor = Callable[[str], Embedder]
Query = str | Sequence[float] | Matrix


class LoadedIndex:
    def __init__(
        self,
        root: Path,
        name: str,
        *,
        embedder_for: EmbedderFor | None = None,
        clock: Clock | None = None,
        check_interval_s: float = 1.0,
    ) -> None:
        if check_interval_s < 0:
            raise ValueError("check_interval_s must be >= 0")
        self.root = root
        self.name = name
        self._embedder_for = embedder_for
        self._clock = clock or SystemClock()
        self._check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._snapshot: Generation = load_current(root, name)
        self._snapshot_dir = _dir_name(self._snapshot)
        self._checked_at = self._clock.now()

    @property
    def generation(self) -> int:
        return self._snapshot.manifest.generation

    def snapshot(self) -> Generation:
        """The generation searches use now (reloading first if it is due)."""
        self.maybe_reload()
        return self._snapshot

    def maybe_reload(self) -> bool:
        """Load a newer generation if ``current`` moved; returns whether it did."""
        now = self._clock.now()
        if now - self._checked_at < self._check_interval_s:
            return False
        with self._lock:
            self._checked_at = now
            # readlink is one cheap syscall; the files are read only when it changed.
            if current_generation_dir(self.root, self.name).name == self._snapshot_dir:
                return False
            fresh = load_current(self.root, self.name)
            self._snapshot = fresh
            self._snapshot_dir = _dir_name(fresh)
            return True

    def search(self, query: Query, k: int = 10) -> list[tuple[str, float]]:
        """Nearest items by cosine similarity, best first: ``[(id, score), ...]``."""
        return self.search_labelled(query, k)[0]

    def search_labelled(self, query: Query, k: int = 10) -> tuple[list[tuple[str, float]], int]:
        """:meth:`search` and the generation it searched: one snapshot for both, so a
        concurrent reload never labels old results with the new generation."""
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be between 1 and {MAX_K}", details={"k": k})
        generation = self.snapshot()
        vector = self._query_vector(generation, query)
        return search_generation(generation, vector, k), generation.manifest.generation

    def _query_vector(self, generation: Generation, query: Query) -> Matrix:
        manifest = generation.manifest
        if isinstance(query, str):
            if not query.strip():
                raise InvalidInput("text must not be empty")
            if self._embedder_for is None:
                raise InvalidInput(f"index {self.name!r} takes vectors only here (no embedder)")
            embedder = self._embedder_for(manifest.model_target)
            if (embedder.model_name, embedder.model_version) != (
                manifest.model_name,
                manifest.model_version,
            ):
                # A different model's vectors live in another space: scores would be noise.
                raise InvalidInput(
                    f"index {self.name!r} was built with {manifest.model_name} "
                    f"{manifest.model_version}; the embedder here is "
                    f"{embedder.model_name} {embedder.model_version}"
                )
            vectors = np.asarray(embedder.embed([query]))
            if vectors.shape != (1, manifest.dim):
                raise InvalidInput(
                    f"index {self.name!r} holds {manifest.dim}-number vectors; the embedder "
                    f"{embedder.model_name} {embedder.model_version} here returned shape "
                    f"{list(vectors.shape)}",
                    details={"expected": manifest.dim, "got": list(vectors.shape)},
                )
            return normalize(vectors)
        return query_vector(query, manifest.dim)


def query_vector(values: Sequence[float] | Matrix, dim: int) -> Matrix:
    """Validate a caller's vector and normalise it; errors are :class:`InvalidInput`."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("vector must be a list of numbers") from exc
    if array.ndim != 1 or array.shape[0] != dim:
        raise InvalidInput(
            f"vector must have {dim} numbers", details={"expected": dim, "got": list(array.shape)}
        )
    if not np.all(np.isfinite(array)):
        raise InvalidInput("vector must not contain NaN or infinity")
    # Scale by the largest magnitude first: huge but finite values would overflow the
    # squares in the norm (and float32), tiny ones would underflow to zero.
    peak = float(np.max(np.abs(array)))
    if peak == 0.0:
        raise InvalidInput("vector must have a non-zero length")
    scaled = array / peak
    out: Matrix = (scaled / np.linalg.norm(scaled)).astype(np.float32).reshape(1, dim)
    return out


def _dir_name(generation: Generation) -> str:
    return f"gen-{generation.manifest.generation:06d}"


def search_generation(generation: Generation, vector: Matrix, k: int) -> list[tuple[str, float]]:
    n = generation.index.ntotal
    if n == 0:
        return []
    scores, rows = generation.index.search(vector, min(k, n))
    return [
        (generation.entries[int(row)].id, float(score))
        for score, row in zip(scores[0], rows[0], strict=True)
        if row >= 0
    ]
