"""JSON responses encoded with orjson (numpy arrays and pydantic models included)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if hasattr(obj, "tolist"):  # numpy scalars and arrays orjson does not take natively
        return obj.tolist()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(content: Any) -> bytes:
    try:
        return orjson.dumps(
            content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        )
    except TypeError:
        # orjson refuses integers beyond 64 bits, which JSON (and the stdlib) allows: a
        # job's input or result may hold one. Rare, so the slow encoder only then.
        return json.dumps(content, default=_default, separators=(",", ":")).encode()


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
