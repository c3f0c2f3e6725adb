"""The vector index on the real all-MiniLM-L6-v2 embedder (slow: loads torch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tenfold.examples.embed import Embed
from tenfold.examples.sentences import sentences
from tenfold.index import IndexRegistry, Item, ModelEmbedder, build_index, refresh_index
from tenfold.index.catalog import write_items
from tenfold.index.cli import app

pytestmark = pytest.mark.slow


class CountingEmbed(Embed):
    """The bundled MiniLM model, counting the texts its ``predict`` sees."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: list[str] = []

    def predict(self, batch: list[str]) -> list[Any]:
        self.seen.extend(batch)
        return super().predict(batch)


@pytest.fixture(scope="module")
def model() -> Iterator[CountingEmbed]:
    embed = CountingEmbed()
    embed.load()
    yield embed


@pytest.fixture
def embedder(model: CountingEmbed) -> ModelEmbedder:
    model.seen.clear()
    return ModelEmbedder(model, target="embed")


TOPICAL = [
    Item("bread", "To bake bread, mix flour, water, yeast and salt, then let the dough rise."),
    Item("cat", "The cat curled up on the warm windowsill and purred in the sun."),
    Item("stocks", "Stock markets fell sharply after the central bank raised interest rates."),
    Item("football", "The striker scored twice in the second half to win the match."),
    Item("volcano", "Lava poured down the side of the erupting volcano towards the village."),
    Item("python", "Python lists grow dynamically and support slicing and comprehensions."),
]


def catalog() -> list[Item]:
    # Tens of items: the topical ones among generated filler sentences.
    filler = [Item(f"s{i}", text) for i, text in enumerate(sentences(24, seed=3))]
    return [*TOPICAL, *filler]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, model: CountingEmbed) -> IndexRegistry:
    root = tmp_path_factory.mktemp("indexes")
    embedder = ModelEmbedder(model, target="embed")
    build_index(root, "demo", catalog(), embedder, batch_size=16)
    return IndexRegistry(root, embedder_factory=lambda _t: embedder)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("how do I make a loaf of bread at home?", "bread"),
        ("a kitten sleeping in the sunshine", "cat"),
        ("interest rate hike hits shares", "stocks"),
        ("eruption threatens nearby town", "volcano"),
    ],
)
def test_search_returns_the_expected_neighbour(built: IndexRegistry, query: str, expected: str):
    index = built.get("demo")
    hits = index.search(query, k=3)
    assert hits[0][0] == expected
    assert hits[0][1] > 0.3 > hits[2][1] - 0.3  # a clear winner, cosine in [-1, 1]
    manifest = index.snapshot().manifest
    assert (manifest.model_name, manifest.model_version, manifest.dim) == (
        "embed",
        "all-MiniLM-L6-v2",
        384,
    )


def test_refresh_embeds_only_changed_items_counted_inside_the_model(
    tmp_path: Path, embedder: ModelEmbedder, model: CountingEmbed
):
    items = catalog()
    build_index(tmp_path, "demo", items, embedder, batch_size=16)
    assert len(model.seen) == len(items)
    model.seen.clear()
    edited = Item("cat", "A dog chased the postman down the street, barking loudly.")
    new = Item("tea", "Steep green tea for two minutes in water just below boiling.")
    updated = [edited if i.id == "cat" else i for i in items if i.id != "football"] + [new]
    report = refresh_index(tmp_path, "demo", updated, embedder, batch_size=16)
    assert sorted(model.seen) == sorted([edited.text, new.text])
    assert (report.embedded, report.reused, report.removed) == (2, len(items) - 2, 1)
    index = IndexRegistry(tmp_path, embedder_factory=lambda _t: embedder).get("demo")
    assert index.search("a barking dog", k=1)[0][0] == "cat"
    assert index.search("brewing a cup of green tea", k=1)[0][0] == "tea"
    assert "football" not in {i for i, _ in index.search("goal scored in the match", k=30)}


def test_cli_build_refresh_search(tmp_path: Path):
    items_path = tmp_path / "items.jsonl"
    write_items(items_path, TOPICAL)
    runner = CliRunner()
    where = ["--dir", str(tmp_path / "idx")]

    built = runner.invoke(
        app, ["build", "demo", "--model", "embed", "--items", str(items_path), *where]
    )
    assert built.exit_code == 0, built.output
    assert "6 items (6 embedded, 0 reused, 0 removed)" in built.stderr
    write_items(items_path, [*TOPICAL[:5], Item("tea", "Steep green tea for two minutes.")])
    refreshed = runner.invoke(app, ["refresh", "demo", *where])
    assert refreshed.exit_code == 0, refreshed.output
    assert "6 items (1 embedded, 5 reused, 1 removed)" in refreshed.stderr
    found = runner.invoke(app, ["search", "demo", "a cup of green tea", "-k", "1", *where])
    assert found.exit_code == 0, found.output
    assert "tea" in found.stdout
    missing = runner.invoke(app, ["search", "nope", "x", *where])
    assert missing.exit_code == 2 and "no index named 'nope'" in missing.stderr
