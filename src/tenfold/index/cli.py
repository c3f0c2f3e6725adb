"""``tenfold index``: build, refresh and search vector indexes from the shell.

::

    python -m tenfold.index.cli build products --model embed --items products.jsonl
    python -m tenfold.index.cli refresh products          # re-embeds only what changed
    python -m tenfold.index.cli search products "red running shoes" -k 5
    python -m tenfold.index.cli demo                      # tenfold's docs as a corpus
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tenfold.errors import IndexNotFound, TenfoldError
from tenfold.index.build import DEFAULT_BATCH_SIZE, BuildReport, build_index
from tenfold.index.catalog import Item, read_items, write_items
from tenfold.index.demo import Corpus, corpus_items
from tenfold.index.embedder import Embedder, embedder_from_target
from tenfold.index.loaded import LoadedIndex
from tenfold.index.store import current_generation_dir, read_generation

app = typer.Typer(
    rich_markup_mode=None,
    help="Vector indexes: embed a catalog, refresh it incrementally, search it.",
)
console = Console(stderr=True)

DirOption = Annotated[
    Path,
    typer.Option("--dir", envvar="TENFOLD_INDEX_DIR", help="Directory holding the indexes."),
]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Texts per embedding call.")]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (TenfoldError, FileNotFoundError, ValueError) as exc:
        message = exc.message if isinstance(exc, TenfoldError) else str(exc)
        console.print(f"[red]error:[/red] {message}")
        raise typer.Exit(2) from exc


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _publish(
    label: str,
    directory: Path,
    name: str,
    catalog: list[Item],
    embedder: Embedder,
    *,
    items_path: Path,
    batch_size: int,
    incremental: bool,
) -> None:
    """Embed with a progress bar, publish the generation, print the report."""
    with _progress(label) as update:
        report = build_index(
            directory,
            name,
            catalog,
            embedder,
            items_path=items_path,
            batch_size=batch_size,
            on_progress=update,
            incremental=incremental,
        )
    _report(report)


def _report(report: BuildReport) -> None:
    console.print(
        f"index [bold]{report.name}[/bold] generation {report.generation}: "
        f"{report.count} items ({report.embedded} embedded, {report.reused} reused, "
        f"{report.removed} removed) in {report.seconds:.1f} s -> {report.path}"
    )


@app.command()
def build(
    name: str,
    items: Annotated[Path, typer.Option("--items", help="JSONL catalog: {id, text} a line.")],
    model: Annotated[str, typer.Option("--model", help="embed or module:Class")] = "embed",
    directory: DirOption = Path("indexes"),
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Embed every item of the catalog and publish the index."""
    with _errors():
        catalog = read_items(items)
        _publish(
            f"embedding {len(catalog)} items",
            directory,
            name,
            catalog,
            embedder_from_target(model),
            items_path=items,
            batch_size=batch_size,
            incremental=False,
        )


@app.command()
def refresh(
    name: str,
    items: Annotated[
        Path | None, typer.Option("--items", help="Catalog (default: the one it was built from).")
    ] = None,
    directory: DirOption = Path("indexes"),
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Re-embed only new or changed items, drop removed ones, swap atomically."""
    with _errors():
        manifest = read_generation(current_generation_dir(directory, name)).manifest
        items_path = items or Path(manifest.items_path)
        catalog = read_items(items_path)
        _publish(
            "embedding changed items",
            directory,
            name,
            catalog,
            embedder_from_target(manifest.model_target),
            items_path=items_path,
            batch_size=batch_size,
            incremental=True,
        )


@app.command()
def search(
    name: str,
    query: str,
    k: Annotated[int, typer.Option("-k", min=1, help="How many results.")] = 5,
    directory: DirOption = Path("indexes"),
) -> None:
    """Search an index with a text query (embedded with the index's model)."""
    with _errors():
        index = LoadedIndex(directory, name, embedder_for=embedder_from_target)
        results = index.search(query, k)
        _print_results(results)


def _print_results(results: list[tuple[str, float]]) -> None:
    table = Table("rank", "id", "score")
    for rank, (item_id, score) in enumerate(results, start=1):
        table.add_row(str(rank), item_id, f"{score:.4f}")
    Console().print(table)


@app.command()
def demo(
    corpus: Annotated[Corpus, typer.Option("--corpus", help="Which offline corpus.")] = Corpus.DOCS,
    name: Annotated[str | None, typer.Option("--name", help="Index name (default: corpus)")] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="Source tree whose docs to index (docs corpus).")
    ] = None,
    query: Annotated[str, typer.Option("--query")] = "how do I refresh an index every day?",
    directory: DirOption = Path("indexes"),
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Build an index over a real offline corpus with the bundled MiniLM, then search it."""
    with _errors():
        index_name = name or corpus.value
        catalog = corpus_items(corpus, root=root)
        directory.mkdir(parents=True, exist_ok=True)
        items_path = directory / f"{index_name}.jsonl"
        write_items(items_path, catalog)
        console.print(f"corpus {corpus.value}: {len(catalog)} passages -> {items_path}")
        embedder = embedder_from_target("embed")
        # Run again after editing the docs: only the changed passages are embedded.
        try:
            current_generation_dir(directory, index_name)
            incremental = True
        except IndexNotFound:
            incremental = False
        _publish(
            f"embedding {len(catalog)} passages",
            directory,
            index_name,
            catalog,
            embedder,
            items_path=items_path,
            batch_size=batch_size,
            incremental=incremental,
        )
        console.print(f"query: [italic]{query}[/italic]")
        index = LoadedIndex(directory, index_name, embedder_for=lambda _target: embedder)
        _print_results(index.search(query, 5))


if __name__ == "__main__":
    app()
