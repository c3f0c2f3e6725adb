"""The online feature store: feature views served through a cache backend.

::

    store = FeatureStore(stack.backend("features"), views=[users])   # ResilientBackend
    rows = await store.get_many("users", ["u1", "u2", "u3"])          # [{...}, {...}, None]
    await store.materialize("users")                                  # push fresh values now

* **Batch fetch**: one ``get_many`` round trip for all requested entities; the
  misses go to the view's loader together (one call per ``max_batch``).
* **Stampede protection**: an entity already being fetched by another request
  is awaited, not fetched again, so N concurrent misses for one entity cost one
  loader call. The in-flight mark is set before the cache lookup and cleared
  only after the values are stored, so a request arriving at any moment either
  joins the fetch or finds the stored value.
* **TTL**: values are stored with the view's ``ttl_s`` (backends expire them);
  entities the source lacks are remembered for ``missing_ttl_s``.

Serving should pass a :class:`tenfold.cache.resilient.ResilientBackend` (what
``CacheStack.backend("features")`` returns) so a cache outage means "read the
source"; with a raw backend, cache errors propagate (what ``materialize`` wants).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tenfold.cache.backend import CacheBackend
from tenfold.cache.keys import DEFAULT_NAMESPACE, model_prefix, quote_part
from tenfold.cache.resilient import ResilientBackend
from tenfold.cache.stats import LayerStats, Outcome
from tenfold.errors import FeatureLoadError, FeatureViewNotFound, InvalidInput
from tenfold.features.codec import FeatureCodecError, decode, encode
from tenfold.features.view import Features, FeatureView, LoaderResult, check_entity_ids

__all__ = ["LAYER", "FeatureStore", "MaterializeReport"]

log = logging.getLogger(__name__)

#: Key layer tag: ``{namespace}:f:v1:{view}:{version}:{entity}``.
LAYER = "f"
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True, slots=True)
class MaterializeReport:
    view: str
    requested: int
    stored: int
    missing: int
    loader_calls: int
    seconds: float


class FeatureStore:
    def __init__(
        self,
        backend: CacheBackend,
        *,
        views: Iterable[FeatureView] = (),
        namespace: str = DEFAULT_NAMESPACE,
        stats: LayerStats | None = None,
    ) -> None:
        self.backend = backend
        self.namespace = namespace
        if stats is None:
            stats = (
                backend.stats if isinstance(backend, ResilientBackend) else LayerStats("features")
            )
        self.stats = stats
        self._views: dict[str, FeatureView] = {}
        for view in views:
            self.register(view)
        # (view name, entity id) -> the future every concurrent reader of it awaits.
        self._inflight: dict[tuple[str, str], asyncio.Future[Features | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # view name -> invalidation generation: a fetch that started before an
        # ``invalidate``/``materialize`` of its view must not store what it read.
        self._generation: dict[str, int] = {}

    # -- views -------------------------------------------------------------------------

    def register(self, view: FeatureView) -> None:
        if view.name in self._views and self._views[view.name] is not view:
            raise ValueError(f"a different feature view named {view.name!r} is registered")
        self._views[view.name] = view

    def view(self, name: str) -> FeatureView:
        try:
            return self._views[name]
        except KeyError:
            raise FeatureViewNotFound(f"no feature view named {name!r}") from None

    @property
    def views(self) -> list[str]:
        return sorted(self._views)

    def key(self, view: FeatureView, entity_id: str) -> str:
        prefix = model_prefix(self.namespace, LAYER, view.name) + quote_part(view.version)
        return f"{prefix}:{quote_part(entity_id)}"

    # -- serving -----------------------------------------------------------------------

    async def get(self, view_name: str, entity_id: str) -> Features | None:
        """One entity's features, or ``None`` if the source has no such entity."""
        return (await self.get_many(view_name, [entity_id]))[0]

    async def get_many(self, view_name: str, entity_ids: Sequence[str]) -> list[Features | None]:
        """Features per id, in order (``None`` where the source has no such entity).

        Raises :class:`FeatureViewNotFound`, :class:`InvalidInput` for a bad id, and
        :class:`FeatureLoadError` when the loader fails for an id that was not cached.
        """
        view = self.view(view_name)
        ids = check_entity_ids(view, entity_ids)
        loop = asyncio.get_running_loop()
        waits: dict[str, asyncio.Future[Features | None]] = {}
        mine: list[str] = []
        for entity_id in dict.fromkeys(ids):  # distinct, first-seen order
            future = self._inflight.get((view.name, entity_id))
            if future is None:
                future = loop.create_future()
                # Mark the exception retrieved even if every waiter was cancelled.
                future.add_done_callback(_consume)
                self._inflight[(view.name, entity_id)] = future
                mine.append(entity_id)
            waits[entity_id] = future
        joined = len(waits) - len(mine)
        if joined:
            self.stats.count(Outcome.COALESCED, joined)
        if mine:
            # A task of its own: if this caller is cancelled, the others still get answers.
            futures = {i: waits[i] for i in mine}
            generation = self._generation.get(view.name, 0)
            task = asyncio.create_task(self._fetch(view, futures, generation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        answers: dict[str, Features | None] = {}
        for entity_id, future in waits.items():
            answers[entity_id] = await asyncio.shield(future)
        # Each caller gets its own dicts: one caller mutating its row must not touch another's.
        return [_copy(answers[entity_id]) for entity_id in ids]

    async def _fetch(
        self,
        view: FeatureView,
        futures: dict[str, asyncio.Future[Features | None]],
        generation: int,
    ) -> None:
        ids = list(futures)
        try:
            keys = [self.key(view, i) for i in ids]
            cached = await self.backend.get_many(keys)
            misses: list[str] = []
            for entity_id, key, value in zip(ids, keys, cached, strict=True):
                if value is None:
                    misses.append(entity_id)
                    continue
                try:
                    _found, features = decode(value)
                except FeatureCodecError as exc:
                    log.warning("feature cache: bad entry %s (%s); reloading", key, exc)
                    misses.append(entity_id)
                    continue
                futures[entity_id].set_result(features)
            self.stats.count(Outcome.HIT, len(ids) - len(misses))
            if misses:
                self.stats.count(Outcome.MISS, len(misses))
                loaded, _calls = await self._load(view, misses)
                # Encode before answering: a value that cannot be cached is an error for
                # every caller, and a miss answers exactly what a later hit will.
                found, absent, errors = self._encode(view, misses, loaded)
                for entity_id in misses:
                    if entity_id in errors:
                        futures[entity_id].set_exception(errors[entity_id])
                        continue
                    key = self.key(view, entity_id)
                    _found, features = decode(found[key] if key in found else absent[key])
                    futures[entity_id].set_result(features)
                # Invalidated (or materialized) since this fetch began: what it read may
                # predate the update, so answer its callers but store nothing.
                if self._generation.get(view.name, 0) == generation:
                    await self._store(view, found, absent)
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, FeatureLoadError)
                else FeatureLoadError(f"feature view {view.name!r}: {type(exc).__name__}: {exc}")
            )
            pending = [f for f in futures.values() if not f.done()]
            for future in pending:
                future.set_exception(error)
            if not pending:
                # Every caller has its answer; only storing it failed (a raw backend).
                log.warning("feature view %s: could not store values: %s", view.name, exc)
        except BaseException:
            for future in futures.values():
                future.cancel()  # no-op for the answered ones
            raise
        finally:
            # Only now: a request arriving from here on finds the stored values.
            for entity_id, future in futures.items():
                if self._inflight.get((view.name, entity_id)) is future:
                    del self._inflight[(view.name, entity_id)]

    async def _load(self, view: FeatureView, ids: Sequence[str]) -> tuple[dict[str, Features], int]:
        """Call the loader in ``max_batch`` chunks; keep only the requested ids."""
        started = time.perf_counter()
        wanted = set(ids)
        out: dict[str, Features] = {}
        calls = 0
        for start in range(0, len(ids), view.max_batch):
            chunk = list(ids[start : start + view.max_batch])
            try:
                result = await _call_loader(view, chunk)
            except Exception as exc:
                raise FeatureLoadError(
                    f"feature view {view.name!r}: loader failed: {type(exc).__name__}: {exc}"
                ) from exc
            calls += 1
            if not isinstance(result, Mapping):
                raise FeatureLoadError(
                    f"feature view {view.name!r}: loader must return {{id: {{feature: value}}}}"
                )
            for entity_id, features in result.items():
                key = str(entity_id)
                if key in wanted:
                    if not isinstance(features, Mapping):
                        raise FeatureLoadError(
                            f"feature view {view.name!r}: features of {key!r} are not a mapping"
                        )
                    out[key] = dict(features)
        self.stats.add_compute(time.perf_counter() - started, len(ids))
        return out, calls

    def _encode(
        self, view: FeatureView, ids: Sequence[str], loaded: Mapping[str, Features]
    ) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, FeatureLoadError]]:
        """``(found, absent, errors)``: cache entries by key for ``ids``, and the error
        per entity id whose features cannot be encoded (only that entity fails)."""
        found: dict[str, bytes] = {}
        absent: dict[str, bytes] = {}
        errors: dict[str, FeatureLoadError] = {}
        for entity_id in ids:
            features = loaded.get(entity_id)
            target = found if features is not None else absent
            try:
                target[self.key(view, entity_id)] = encode(features)
            except FeatureCodecError as exc:
                errors[entity_id] = FeatureLoadError(
                    f"feature view {view.name!r}, {entity_id!r}: {exc}"
                )
        return found, absent, errors

    async def _store(
        self, view: FeatureView, found: Mapping[str, bytes], absent: Mapping[str, bytes]
    ) -> None:
        """Store found entities for ``ttl_s`` and absent ones for ``missing_ttl_s``."""
        if found:
            await self.backend.set_many(found, view.ttl_s)
        if absent:
            await self.backend.set_many(absent, view.missing_ttl_s)

    # -- materialization -----------------------------------------------------------------

    async def materialize(
        self,
        view_name: str,
        entity_ids: Iterable[str] | None = None,
        *,
        on_progress: Progress | None = None,
    ) -> MaterializeReport:
        """Load ``entity_ids`` (default: ``view.list_entities()``) and store them now.

        Runs ahead of traffic (cron, after a batch job) so requests find fresh
        values; each entry gets the full ``ttl_s`` from now. An id the source no
        longer has is stored as absent (for ``missing_ttl_s``, as on a serving miss),
        so an entity deleted at the source stops being served at once.
        """
        view = self.view(view_name)
        self._bump(view.name)
        if entity_ids is None:
            lister = view.list_entities
            if lister is None:
                raise InvalidInput(
                    f"feature view {view.name!r} has no list_entities; give the entity ids"
                )
            entity_ids = await asyncio.to_thread(lambda: list(lister()))
        ids = list(dict.fromkeys(check_entity_ids(view, entity_ids)))
        started = time.perf_counter()
        stored = calls = 0
        for start in range(0, len(ids), view.max_batch):
            chunk = ids[start : start + view.max_batch]
            loaded, n = await self._load(view, chunk)
            calls += n
            found, absent, errors = self._encode(view, chunk, loaded)
            if errors:
                raise next(iter(errors.values()))
            await self._store(view, found, absent)
            stored += len(found)
            if on_progress is not None:
                on_progress(start + len(chunk), len(ids))
        return MaterializeReport(
            view=view.name,
            requested=len(ids),
            stored=stored,
            missing=len(ids) - stored,
            loader_calls=calls,
            seconds=time.perf_counter() - started,
        )

    async def invalidate(self, view_name: str) -> int:
        """Drop every cached entry of a view (all versions).

        Fetches of the view already running in this process store nothing, and
        requests from now on do not join them. Another process's running fetch may
        still store values it read before the update (they live until ``ttl_s``).
        """
        view = self.view(view_name)
        self._bump(view.name)
        return await self.backend.delete_prefix(model_prefix(self.namespace, LAYER, view.name))

    def _bump(self, view_name: str) -> None:
        """New invalidation generation: running fetches of the view become stale."""
        self._generation[view_name] = self._generation.get(view_name, 0) + 1
        for key in [k for k in self._inflight if k[0] == view_name]:
            del self._inflight[key]

    async def wait_idle(self) -> None:
        """Wait until no fetch is running. Callers get their answers before the values
        are stored (a fetch finishes in the background); tests and ``close`` wait here."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Let running fetches finish (their callers may be gone); the backend is the
        owner's to close."""
        await self.wait_idle()


async def _call_loader(view: FeatureView, ids: list[str]) -> LoaderResult:
    if inspect.iscoroutinefunction(view.loader):
        result: Any = await view.loader(ids)
        return result  # type: ignore[no-any-return]
    # Offline sources are blocking drivers (psycopg, sqlite3): keep them off the loop.
    result = await asyncio.to_thread(view.loader, ids)
    if inspect.isawaitable(result):
        result = await result
    return result  # type: ignore[no-any-return]


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _copy(features: Features | None) -> Features | None:
    return None if features is None else dict(features)
