"""HTTP search over the vector indexes: ``POST /v1/indexes/{name}/search``.

::

    app.include_router(make_router(IndexRegistry(Path("indexes"))))

Body: ``{"text": "...", "k": 5}`` or ``{"vector": [0.1, ...], "k": 5}``
(exactly one of ``text``/``vector``; ``k`` defaults to 10, at most 1000).
Answer: ``{"index": name, "generation": n, "results": [{"id": ..., "score": ...}]}``,
best first; ``score`` is the cosine similarity. Errors are tenfold errors
(``IndexNotFound``, ``InvalidInput``) for the server's one status table.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool

from tenfold.errors import InvalidInput
from tenfold.index.loaded import MAX_K
from tenfold.index.registry import IndexRegistry


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(min_length=1, max_length=10_000)] | None = None
    vector: list[float] | None = None
    k: int = Field(default=10, ge=1, le=MAX_K)


class SearchHit(BaseModel):
    id: str
    score: float


class SearchResponse(BaseModel):
    index: str
    generation: int
    results: list[SearchHit]


def parse_search(body: bytes) -> SearchRequest:
    """Validate a request body; every problem becomes :class:`InvalidInput` naming the field."""
    try:
        raw: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from exc
    try:
        request = SearchRequest.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        first = errors[0]
        message = f"{first['field'] or 'body'}: {first['message']}"
        raise InvalidInput(message, details=errors) from exc
    if (request.text is None) == (request.vector is None):
        raise InvalidInput("give exactly one of 'text' or 'vector'")
    return request


def make_router(registry: IndexRegistry) -> APIRouter:
    router = APIRouter(tags=["indexes"])

    @router.post("/v1/indexes/{name}/search", response_model=SearchResponse)
    async def search(name: str, request: Request) -> SearchResponse:
        parsed = parse_search(await request.body())

        def run() -> SearchResponse:
            # Thread: loading an index, reloading it and embedding a text all block.
            index = registry.get(name)
            query = parsed.text if parsed.text is not None else parsed.vector
            assert query is not None  # parse_search guarantees one of them
            hits, generation = index.search_labelled(query, parsed.k)
            return SearchResponse(
                index=name,
                generation=generation,
                results=[SearchHit(id=i, score=s) for i, s in hits],
            )

        return await run_in_threadpool(run)

    return router
