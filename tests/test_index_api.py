"""POST /v1/indexes/{name}/search, in-process through the ASGI transport."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tenfold.errors import InvalidInput, NotFound, TenfoldError
from tenfold.index import IndexRegistry, build_index, refresh_index
from tenfold.index.api import make_router
from tenfold.index.embedder import Matrix
from test_index_store import CATALOG, DIM, BagOfWords


def make_app(registry: IndexRegistry) -> FastAPI:
    app = FastAPI()
    app.include_router(make_router(registry))

    # The server maps the error tree in one table; this is the slice these routes need.
    @app.exception_handler(TenfoldError)
    async def tenfold_error(_request: Request, exc: TenfoldError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 422 if isinstance(exc, InvalidInput) else 500
        return JSONResponse({"error": exc.to_dict()}, status_code=status)

    return app


@pytest.fixture
def client(tmp_path: Path) -> httpx.AsyncClient:
    embedder = BagOfWords()
    build_index(tmp_path, "things", CATALOG, embedder)
    registry = IndexRegistry(tmp_path, embedder_factory=lambda _t: embedder, check_interval_s=0)
    transport = httpx.ASGITransport(app=make_app(registry))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_search_by_text_and_by_vector(client: httpx.AsyncClient, tmp_path: Path):
    r = await client.post("/v1/indexes/things/search", json={"text": "wave tide", "k": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["index"] == "things" and body["generation"] == 1
    assert body["results"][0]["id"] == "ocean"
    assert len(body["results"]) == 2
    assert body["results"][0]["score"] >= body["results"][1]["score"]

    vector = [float(x) for x in BagOfWords().embed(["piston crankshaft"])[0]]
    r = await client.post("/v1/indexes/things/search", json={"vector": vector})
    assert r.status_code == 200
    assert r.json()["results"][0]["id"] == "engine"
    assert len(r.json()["results"]) == 4  # default k=10, capped by the index size

    # A refresh on disk is picked up by the next request.
    refresh_index(tmp_path, "things", CATALOG[:2], BagOfWords())
    r = await client.post("/v1/indexes/things/search", json={"text": "wave tide"})
    assert r.json()["generation"] == 2
    assert {hit["id"] for hit in r.json()["results"]} == {"apple", "engine"}


async def test_unknown_index_is_404(client: httpx.AsyncClient):
    r = await client.post("/v1/indexes/missing/search", json={"text": "x"})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "index_not_found"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"vector": [1.0] * (DIM + 1)}, f"must have {DIM} numbers"),
        ({"vector": [0.0] * DIM}, "non-zero length"),
        ({"vector": ["x"] * DIM}, "vector.0"),
        ({"text": "a", "vector": [1.0] * DIM}, "exactly one"),
        ({}, "exactly one"),
        ({"text": ""}, "text"),
        ({"text": "a", "k": 0}, "k"),
        ({"text": "a", "k": 5000}, "k"),
        ({"text": "a", "extra": 1}, "extra"),
        ([1, 2], "body"),
    ],
)
async def test_bad_requests_are_invalid_input(
    client: httpx.AsyncClient, body: object, fragment: str
):
    r = await client.post("/v1/indexes/things/search", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_input"
    assert fragment in error["message"]


async def test_non_json_body_and_nan_vector(client: httpx.AsyncClient):
    r = await client.post("/v1/indexes/things/search", content=b"{nope")
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"]
    # JSON has no NaN, but Python's json module writes one; it must still be refused.
    r = await client.post(
        "/v1/indexes/things/search",
        content=b'{"vector": [NaN' + b", 1.0" * (DIM - 1) + b"]}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422


async def test_bad_index_name_is_invalid_input(client: httpx.AsyncClient):
    r = await client.post("/v1/indexes/..%2Fetc/search", json={"text": "x"})
    assert r.status_code in (404, 422)
    r = await client.post("/v1/indexes/bad name!/search", json={"text": "x"})
    assert r.status_code == 422


async def test_results_carry_the_generation_they_were_searched_in(tmp_path: Path):
    class ReloadWhileEmbedding(BagOfWords):
        """Another request reloads the index while this one embeds its query."""

        armed = False

        def embed(self, texts: Sequence[str]) -> Matrix:
            if self.armed:
                self.armed = False
                refresh_index(tmp_path, "things", CATALOG[:2], BagOfWords())
                assert registry.get("things").maybe_reload()
            return super().embed(texts)

    embedder = ReloadWhileEmbedding()
    build_index(tmp_path, "things", CATALOG, embedder)
    registry = IndexRegistry(tmp_path, embedder_factory=lambda _t: embedder, check_interval_s=0)
    transport = httpx.ASGITransport(app=make_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        embedder.armed = True
        r = await client.post("/v1/indexes/things/search", json={"text": "wave tide"})
        # Searched on generation 1 (all four items), so labelled 1, not the reloaded 2.
        assert {hit["id"] for hit in r.json()["results"]} == {item.id for item in CATALOG}
        assert r.json()["generation"] == 1
        r = await client.post("/v1/indexes/things/search", json={"text": "wave tide"})
        assert r.json()["generation"] == 2
        assert {hit["id"] for hit in r.json()["results"]} == {"apple", "engine"}
