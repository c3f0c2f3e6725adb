"""``tenfold features``: push fresh feature values to the online store.

::

    python -m tenfold.features.cli seed-demo --source postgresql://postgres@127.0.0.1:5432/test
    python -m tenfold.features.cli materialize users \\
        --source postgresql://postgres@127.0.0.1:5432/test --cache redis://127.0.0.1:6379/0
    python -m tenfold.features.cli materialize mypkg.features:orders --cache redis://...

``VIEW`` is ``users`` (the bundled example) or ``module:attr`` naming a
:class:`FeatureView` or a function that returns one (called with ``--source``
as its only argument when given).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tenfold.cache.backend import InvalidCacheURL, from_url
from tenfold.errors import TenfoldError
from tenfold.features.example import DEFAULT_SOURCE_URL, DEFAULT_TABLE, seed_users
from tenfold.features.store import FeatureStore, MaterializeReport
from tenfold.features.view import FeatureView

app = typer.Typer(
    rich_markup_mode=None, help="Feature store: materialize feature views into the online cache."
)
console = Console(stderr=True)

BUNDLED = {"users": "tenfold.features.example:user_features"}

CacheOption = Annotated[
    str,
    typer.Option(
        "--cache",
        envvar="TENFOLD_CACHE_URL",
        help="Online store the server reads (redis://host:port/db).",
    ),
]
SourceOption = Annotated[
    str | None,
    typer.Option("--source", envvar="TENFOLD_FEATURES_SOURCE", help="Offline source URL."),
]


def resolve_view(target: str, source: str | None = None) -> FeatureView:
    """``users`` or ``module:attr`` -> a FeatureView (calling a factory with ``source``)."""
    spec = BUNDLED.get(target, target)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"feature view {target!r} must be MODULE:ATTR or one of {list(BUNDLED)}")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load feature view {target!r}: {exc}") from exc
    if isinstance(obj, FeatureView):
        if source is not None:
            raise ValueError(f"{target!r} is a FeatureView instance; --source applies to factories")
        return obj
    if callable(obj):
        view = obj(source) if source is not None else obj()
        if isinstance(view, FeatureView):
            return view
    raise ValueError(f"{target!r} is neither a FeatureView nor a function returning one")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (TenfoldError, ValueError, InvalidCacheURL, OSError) as exc:
        message = exc.message if isinstance(exc, TenfoldError) else str(exc)
        console.print(f"[red]error:[/red] {message}")
        raise typer.Exit(2) from exc


async def _materialize(
    view: FeatureView, cache_url: str, ids: list[str] | None, progress: Callable[[int, int], None]
) -> MaterializeReport:
    # A raw backend on purpose: if the cache is down, materialize must fail loudly.
    backend = from_url(cache_url)
    try:
        store = FeatureStore(backend, views=[view])
        return await store.materialize(
            view.name, ids, on_progress=lambda done, total: progress(done, total or 0)
        )
    finally:
        await backend.close()


@app.command()
def materialize(
    view: str,
    cache: CacheOption = "redis://127.0.0.1:6379/0",
    source: SourceOption = None,
    entities: Annotated[
        Path | None,
        typer.Option("--entities", help="File of entity ids, one a line (default: all)."),
    ] = None,
) -> None:
    """Load a view's current values from its source and store them in the online cache."""
    with _errors():
        if cache.startswith("memory:"):
            raise ValueError(
                "memory:// lives inside one process: materialize into the server's shared "
                "cache (--cache redis://host:port/db)"
            )
        feature_view = resolve_view(view, source)
        ids = None
        if entities is not None:
            lines = entities.read_text(encoding="utf-8").splitlines()
            ids = [line.strip() for line in lines if line.strip()]
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(f"materializing {feature_view.name}", total=None)
            report = asyncio.run(
                _materialize(
                    feature_view,
                    cache,
                    ids,
                    lambda done, total: bar.update(task, completed=done, total=total),
                )
            )
        console.print(
            f"view [bold]{report.view}[/bold]: {report.stored} stored, {report.missing} not in "
            f"the source, {report.loader_calls} loader calls, {report.seconds:.2f} s "
            f"(ttl {feature_view.ttl_s:g} s)"
        )


@app.command("seed-demo")
def seed_demo(
    source: Annotated[str, typer.Option("--source", help="Where to create the table.")] = (
        DEFAULT_SOURCE_URL
    ),
    table: Annotated[str, typer.Option("--table")] = DEFAULT_TABLE,
    users: Annotated[int, typer.Option("--users", min=1)] = 1000,
) -> None:
    """Create and fill the bundled example's user_features table."""
    with _errors():
        n = seed_users(source, table=table, n=users)
        console.print(f"{n} users in {table}")


if __name__ == "__main__":
    app()
