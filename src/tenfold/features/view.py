"""Feature views: what users declare in Python.

::

    def load_users(ids: list[str]) -> dict[str, dict[str, object]]:
        rows = db.fetch("SELECT ... WHERE user_id = ANY(%s)", ids)   # one batched read
        return {row["user_id"]: {"country": row["country"], ...} for row in rows}

    users = FeatureView("users", entity_key="user_id", loader=load_users, ttl_s=3600)

``loader(ids)`` reads the offline source for a list of entity ids at once and
returns ``{id: {feature: value}}``; ids it does not know are left out. It may
be a plain function (run in a worker thread so it never blocks the event loop)
or an ``async def``. Values must be JSON-serialisable (numbers, strings, bools,
None, lists, dicts; ``Decimal`` becomes a float, datetimes ISO strings).
``version`` is part of every cache key: bump it when the loader's meaning changes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tenfold.errors import InvalidInput

Features = dict[str, Any]
LoaderResult = Mapping[str, Mapping[str, Any]]
Loader = Callable[[Sequence[str]], LoaderResult | Awaitable[LoaderResult]]
EntityLister = Callable[[], Iterable[str]]

DEFAULT_TTL_S = 3600.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class FeatureView:
    name: str
    entity_key: str
    loader: Loader
    ttl_s: float = DEFAULT_TTL_S
    version: str = "1"
    #: All entity ids of the offline source, for ``materialize`` without an explicit list.
    list_entities: EntityLister | None = None
    #: Entities per loader call; a larger miss set is split into several calls.
    max_batch: int = 500
    #: How long "this entity does not exist" is cached, so unknown ids do not reach the
    #: source on every request; short, because the entity may appear soon.
    missing_ttl_s: float = 60.0

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"feature view name {self.name!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        if not self.entity_key:
            raise ValueError(f"feature view {self.name!r}: entity_key must not be empty")
        if self.ttl_s <= 0 or self.missing_ttl_s <= 0:
            raise ValueError(f"feature view {self.name!r}: ttl_s and missing_ttl_s must be > 0")
        if not self.version:
            raise ValueError(f"feature view {self.name!r}: version must not be empty")
        if self.max_batch < 1:
            raise ValueError(f"feature view {self.name!r}: max_batch must be at least 1")


def check_entity_ids(view: FeatureView, ids: Iterable[object]) -> list[str]:
    out: list[str] = []
    for entity_id in ids:
        if not isinstance(entity_id, str) or not entity_id:
            raise InvalidInput(
                f"{view.entity_key} must be a non-empty string, got {entity_id!r}",
                details={"view": view.name},
            )
        out.append(entity_id)
    return out
