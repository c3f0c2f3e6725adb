"""Precomputed item embeddings and a FAISS vector index.

::

    from tenfold.index import IndexRegistry, build_index, read_items, embedder_from_target

    items = read_items(Path("docs.jsonl"))
    build_index(Path("indexes"), "docs", items, embedder_from_target("embed"))
    IndexRegistry(Path("indexes")).get("docs").search("refresh daily", k=3)
"""

from tenfold.index.build import BuildReport, RefreshPlan, build_index, plan_refresh, refresh_index
from tenfold.index.catalog import Item, read_items
from tenfold.index.embedder import Embedder, ModelEmbedder, embedder_from_target
from tenfold.index.loaded import LoadedIndex
from tenfold.index.registry import IndexRegistry

__all__ = [
    "BuildReport",
    "Embedder",
    "IndexRegistry",
    "Item",
    "LoadedIndex",
    "ModelEmbedder",
    "RefreshPlan",
    "build_index",
    "embedder_from_target",
    "plan_refresh",
    "read_items",
    "refresh_index",
]
