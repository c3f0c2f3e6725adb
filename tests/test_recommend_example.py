"""examples/recommend.py: the three cache layers on the real MiniLM embedder."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "recommend.py"


def test_recommend_pipeline_uses_every_cache_layer(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("recommend_example", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = asyncio.run(module.demo(f"sqlite:///{tmp_path / 'features.db'}", "memory://"))
    assert out["again"] == out["first"]
    assert all("embedding index" in item for item in out["first"])
    assert any("bread" in item for item in out["other"])
    layers = out["stats"]["layers"]
    assert layers["result"]["hits"] == 1  # the repeated (user, query)
    assert layers["result"]["misses"] == 2
    # the catalog is embedded once: the second ranking finds all 200 items cached
    assert layers["embedding"]["hits"] == 200
    assert layers["embedding"]["misses"] == 200 + 2
    assert layers["features"]["misses"] == 2  # two users, each loaded once
