"""Real model, real process: ``tenfold serve --example embed`` on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from serve_support import served
from tenfold.examples.sentences import sentences

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with served(["--example", "embed"], log) as url:
        yield url
    out = log.read_text()
    assert "ready" in out and "curl -s" in out  # startup printed the try-it line


def test_200_concurrent_requests_match_sentence_transformers(embed_server: str) -> None:
    from tenfold.examples.embed import load_sentence_transformer

    texts = sentences(200, seed=42)

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=embed_server, timeout=120, limits=limits) as c:
            return list(
                await asyncio.gather(
                    *(
                        # a generous deadline: this test checks outputs, not speed
                        c.post("/v1/models/embed/predict", json={"input": t, "timeout_ms": 6e5})
                        for t in texts
                    )
                )
            )

    responses = asyncio.run(fire())
    bad = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
    assert not bad, bad[:3]
    got = np.array([r.json()["output"] for r in responses], dtype=np.float32)
    assert got.shape == (200, 384)
    want = load_sentence_transformer().encode(texts, convert_to_numpy=True)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.9999, cos.min()

    stats = httpx.get(embed_server + "/v1/stats").json()["models"]["embed"]
    sizes = [int(k) for k in stats["batches"]["histogram"]]
    assert max(sizes) > 1, stats["batches"]
    assert stats["batches"]["mean_size"] > 1
    assert stats["items_total"] >= 200
