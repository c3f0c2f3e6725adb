"""Cache key layout: one place for every prefix a layer writes.

Keys are ``{namespace}:{layer}:{KEY_SCHEMA_VERSION}:{model}:...``. The model
name is percent-quoted so that a ``:`` in it can never make one model's prefix
match another's (``a`` vs ``a:b``). Bump :data:`KEY_SCHEMA_VERSION` whenever
what goes into a key or a value changes: old entries then simply stop matching.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

__all__ = ["DEFAULT_NAMESPACE", "KEY_SCHEMA_VERSION", "model_prefix", "quote_part"]

KEY_SCHEMA_VERSION = "v1"
DEFAULT_NAMESPACE = "tenfold"


def quote_part(text: str) -> str:
    """``text`` with every character that could act as a separator or glob escaped."""
    return quote(text, safe="")


@lru_cache(maxsize=4096)  # few distinct models; quoting showed up in the hit-path profile
def model_prefix(namespace: str, layer: str, model: str) -> str:
    """Prefix under which ``layer`` stores every entry of ``model`` (all versions, tenants)."""
    return f"{namespace}:{layer}:{KEY_SCHEMA_VERSION}:{quote_part(model)}:"
