"""All indexes under one directory, loaded on first use, for the server.

::

    registry = IndexRegistry(Path("indexes"))        # at server start; loads nothing yet
    registry.get("docs").search("refresh", k=3)       # IndexNotFound for unknown names

One embedder per model target is shared by every index built with it and is
created lazily on the first text query (``embedder_factory`` defaults to
loading the model in this process; pass your own to embed elsewhere).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tenfold.clock import Clock
from tenfold.index.embedder import Embedder, embedder_from_target
from tenfold.index.loaded import LoadedIndex
from tenfold.index.store import check_name, list_names

EmbedderFactory = Callable[[str], Embedder]


class IndexRegistry:
    def __init__(
        self,
        root: Path,
        *,
        embedder_factory: EmbedderFactory = embedder_from_target,
        clock: Clock | None = None,
        check_interval_s: float = 1.0,
    ) -> None:
        self.root = root
        self._embedder_factory = embedder_factory
        self._clock = clock
        self._check_interval_s = check_interval_s
        self._indexes: dict[str, LoadedIndex] = {}
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        # Separate lock: loading a model takes seconds and must not block index lookups.
        self._embedders_lock = threading.Lock()

    def names(self) -> list[str]:
        """Indexes on disk (loaded or not)."""
        return list_names(self.root)

    def get(self, name: str) -> LoadedIndex:
        """The loaded index; raises InvalidInput for a bad name, IndexNotFound if absent."""
        check_name(name)
        with self._lock:
            index = self._indexes.get(name)
            if index is None:
                index = LoadedIndex(
                    self.root,
                    name,
                    embedder_for=self.embedder,
                    clock=self._clock,
                    check_interval_s=self._check_interval_s,
                )
                self._indexes[name] = index
            return index

    def embedder(self, target: str) -> Embedder:
        with self._embedders_lock:
            embedder = self._embedders.get(target)
            if embedder is None:
                embedder = self._embedder_factory(target)
                self._embedders[target] = embedder
            return embedder
