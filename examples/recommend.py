"""The seed's multi-layer pipeline: result cache -> embedding cache -> rank with features.

    python examples/recommend.py [--source sqlite:///tenfold-features.db | postgresql://...]
                                 [--cache memory:// | redis://127.0.0.1:6379/0]

Layer 1, the result cache: a repeated (user, query) is answered without any model call.
Layer 2, the embedding cache: catalog items and queries are embedded once (real MiniLM).
Layer 3, the feature cache: user features come from the online store, loaded from the
offline source (SQLite or PostgreSQL) on a miss. The ranking rule is a toy: similarity,
plus a nudge towards popular items for users who order often.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import numpy as np

from tenfold.cache import CacheStack
from tenfold.examples.embed import load_sentence_transformer
from tenfold.examples.sentences import sentences
from tenfold.features import FeatureStore
from tenfold.features.example import seed_users, user_features

CATALOG = sentences(200, seed=3)  # the items we recommend from
POPULARITY = np.linspace(1.0, 0.0, len(CATALOG))  # item 0 is the most popular


# --- the user code: about 30 lines --------------------------------------------------
class Recommender:
    def __init__(self, source: str, cache: str) -> None:
        self.model = load_sentence_transformer()
        self.stack = CacheStack.from_url(cache)
        self.features = FeatureStore(self.stack.backend("features"), views=[user_features(source)])
        self.embeddings = self.stack.embedding("embed", "all-MiniLM-L6-v2")

    def encode(self, texts: list[str]) -> Any:
        return self.model.encode(list(texts), normalize_embeddings=True)

    async def recommend(self, user: str, query: str, k: int = 3) -> list[str]:
        async def compute() -> list[str]:
            items = await self.embeddings.embed_many(CATALOG, self.encode)  # layer 2
            (q,) = await self.embeddings.embed_many([query], self.encode)  # layer 2
            (feats,) = await self.features.get_many("users", [user])  # layer 3
            nudge = 0.02 * min((feats or {}).get("orders_30d", 0), 20) / 20
            scores = items @ q + nudge * POPULARITY
            return [CATALOG[i] for i in np.argsort(-scores)[:k]]

        assert self.stack.result is not None
        cached = await self.stack.result.get_or_compute(  # layer 1
            model="recommend",
            version="1",
            input={"user": user, "query": query, "k": k},
            compute=compute,
        )
        return list(cached.value)


# --------------------------------------------------------------------------------------


async def demo(source: str, cache: str) -> dict[str, Any]:
    seed_users(source, n=100)
    rec = Recommender(source, cache)
    try:
        first = await rec.recommend("u00007", "who shipped the embedding index?")
        again = await rec.recommend("u00007", "who shipped the embedding index?")
        other = await rec.recommend("u00042", "a recipe for bread")
        return {"first": first, "again": again, "other": other, "stats": rec.stack.stats()}
    finally:
        await rec.features.close()
        await rec.stack.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", default="sqlite:///tenfold-features.db")
    p.add_argument("--cache", default="memory://")
    args = p.parse_args()
    out = asyncio.run(demo(args.source, args.cache))
    for name in ("first", "again", "other"):
        print(f"{name}:", *out[name], sep="\n  ")
    for layer, figures in out["stats"]["layers"].items():
        print(f"{layer}: hits {figures.get('hits')} misses {figures.get('misses')}")


if __name__ == "__main__":
    main()
