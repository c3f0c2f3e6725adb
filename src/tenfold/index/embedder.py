"""Embedders: text in, float32 vectors out.

An index remembers which model built it (target, name, version); text queries
and refreshes must embed with that same model, or scores are meaningless.
:class:`ModelEmbedder` wraps any :class:`tenfold.Model` whose ``predict``
returns one vector per text (``embed`` -> the bundled all-MiniLM-L6-v2).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tenfold.model import Model, load_model_class

Matrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    #: The model target as given on the command line (``embed``, ``pkg.mod:Class``).
    target: str
    model_name: str
    model_version: str

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Return an ``(len(texts), dim)`` float32 matrix, one row per text, in order."""
        ...


class ModelEmbedder:
    """Runs a tenfold model in this process; ``load`` happens on first use."""

    def __init__(self, model: Model[Any, Any], *, target: str) -> None:
        self.model = model
        self.target = target
        self.model_name = type(model).name
        self.model_version = model.version
        self._loaded = False
        self._load_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            raise ValueError("embed needs at least one text")
        with self._load_lock:
            if not self._loaded:
                self.model.load()
                self._loaded = True
        rows = self.model.predict(list(texts))
        if len(rows) != len(texts):
            raise ValueError(
                f"model {self.model_name!r} returned {len(rows)} vectors for {len(texts)} texts"
            )
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError(f"model {self.model_name!r} must return one flat vector per text")
        return matrix


def embedder_from_target(target: str) -> ModelEmbedder:
    """``embed`` (bundled MiniLM) or ``module:Class`` of a tenfold Model that embeds."""
    cls = load_model_class(target)
    return ModelEmbedder(cls(), target=target)
