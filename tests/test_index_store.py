"""Index storage, refresh planning and atomic swaps, with a small bag-of-words embedder.

The embedder here is a real (if simple) text embedder: feature hashing of
lower-cased words into 64 dimensions. It keeps these tests fast; the MiniLM
tests live in test_index_minilm.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tenfold.clock import FakeClock
from tenfold.errors import IndexNotFound, InvalidInput
from tenfold.index import IndexRegistry, Item, LoadedIndex, build_index, plan_refresh, refresh_index
from tenfold.index.catalog import parse_items, read_items, unique_items, write_items
from tenfold.index.demo import Corpus, corpus_items, docs_items, passages, split_markdown
from tenfold.index.embedder import Matrix
from tenfold.index.store import KEEP_PREVIOUS, current_generation_dir, list_names

DIM = 64


class BagOfWords:
    """Feature-hashed word counts; records every text it embeds."""

    target = "bag-of-words"
    model_name = "bag-of-words"
    model_version = "1"

    def __init__(self) -> None:
        self.embedded: list[str] = []
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> Matrix:
        self.calls += 1
        self.embedded.extend(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM
                out[row, bucket] += 1.0
        return out


CATALOG = [
    Item("apple", "apple banana cherry"),
    Item("engine", "engine piston crankshaft"),
    Item("ocean", "ocean wave tide"),
    Item("violin", "violin cello viola"),
]


def test_plan_refresh_reuses_unchanged_embeds_new_and_changed_drops_removed():
    old = {"a": Item("a", "one").content_hash, "b": Item("b", "two").content_hash, "gone": "x"}
    items = [Item("a", "one"), Item("b", "two, edited"), Item("c", "three")]
    plan = plan_refresh(old, items, model_changed=False)
    assert plan.reuse == ("a",)
    assert [i.id for i in plan.embed] == ["b", "c"]
    assert plan.removed == ("gone",)
    # A different model invalidates every stored vector.
    plan = plan_refresh(old, items, model_changed=True)
    assert plan.reuse == () and len(plan.embed) == 3


def test_catalog_parsing_names_the_bad_line(tmp_path: Path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n\n{"id": 7, "text": "seven"}\n')
    assert read_items(path) == [Item("a", "x"), Item("7", "seven")]
    with pytest.raises(InvalidInput, match=r"<items>:2: 'id' \(string\)"):
        list(parse_items(['{"id": "a", "text": "x"}', '{"id": "b"}']))
    with pytest.raises(InvalidInput, match="<items>:1: not valid JSON"):
        list(parse_items(["{nope"]))
    with pytest.raises(InvalidInput, match="duplicate item id 'a'"):
        unique_items([Item("a", "x"), Item("a", "y")])
    path.write_text(
        '{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n\n{"id": "a", "text": "z"}\n'
    )
    with pytest.raises(
        InvalidInput, match=r"items.jsonl:4: duplicate item id 'a' \(first at line 1\)"
    ):
        read_items(path)
    with pytest.raises(InvalidInput, match="1 to 10000 characters"):
        Item("a", "")


def test_build_then_search_finds_the_matching_item(tmp_path: Path):
    embedder = BagOfWords()
    report = build_index(tmp_path, "things", CATALOG, embedder, batch_size=3)
    assert (report.generation, report.count, report.embedded) == (1, 4, 4)
    assert embedder.calls == 2  # batches of 3 + 1
    index = LoadedIndex(tmp_path, "things", embedder_for=lambda _t: embedder)
    hits = index.search("tide and wave", k=2)
    assert hits[0][0] == "ocean"
    assert hits[0][1] > hits[1][1]
    # Vectors are L2-normalised: an item's own text scores cosine 1.
    [(best, score)] = index.search("violin cello viola", k=1)
    assert best == "violin" and score == pytest.approx(1.0, abs=1e-5)
    assert list_names(tmp_path) == ["things"]


def test_refresh_embeds_only_new_and_changed_items(tmp_path: Path):
    build_index(tmp_path, "things", CATALOG, BagOfWords())
    embedder = BagOfWords()
    changed = [
        CATALOG[0],
        Item("engine", "engine turbine exhaust"),  # changed text
        CATALOG[3],
        Item("desert", "desert dune cactus"),  # new; "ocean" removed
    ]
    report = refresh_index(tmp_path, "things", changed, embedder)
    assert sorted(embedder.embedded) == ["desert dune cactus", "engine turbine exhaust"]
    assert (report.generation, report.embedded, report.reused, report.removed) == (2, 2, 2, 1)
    index = LoadedIndex(tmp_path, "things", embedder_for=lambda _t: embedder)
    assert index.search("cactus", k=1)[0][0] == "desert"
    assert index.search("turbine", k=1)[0][0] == "engine"
    assert "ocean" not in {i for i, _ in index.search("ocean wave tide", k=10)}
    # Reused vectors are the stored ones, byte for byte equal to a fresh embedding.
    [(apple, score)] = index.search("apple banana cherry", k=1)
    assert apple == "apple" and score == pytest.approx(1.0, abs=1e-5)
    # Nothing changed: a refresh embeds nothing and still publishes a generation.
    quiet = BagOfWords()
    report = refresh_index(tmp_path, "things", changed, quiet)
    assert (quiet.calls, report.embedded, report.reused, report.generation) == (0, 0, 4, 3)


def test_refresh_of_a_missing_index_is_index_not_found(tmp_path: Path):
    with pytest.raises(IndexNotFound):
        refresh_index(tmp_path, "never-built", CATALOG, BagOfWords())


def test_reader_holding_old_generation_keeps_working_and_new_reader_sees_new(tmp_path: Path):
    embedder = BagOfWords()
    build_index(tmp_path, "things", CATALOG, embedder)
    clock = FakeClock()
    reader = LoadedIndex(
        tmp_path, "things", embedder_for=lambda _t: embedder, clock=clock, check_interval_s=5.0
    )
    old_snapshot = reader.snapshot()
    # Several refreshes: older generation directories get pruned from disk.
    for n in range(KEEP_PREVIOUS + 2):
        extra = Item(f"new{n}", f"zebra{n} giraffe")
        refresh_index(tmp_path, "things", [*CATALOG, extra], embedder)
    assert not (tmp_path / "things" / "gen-000001").exists()
    # Within the check interval the reader still answers from generation 1, from memory.
    assert reader.generation == 1
    assert reader.search("violin", k=1)[0][0] == "violin"
    assert old_snapshot.index.ntotal == 4
    clock.advance(5.0)
    assert reader.search("zebra3 giraffe", k=1)[0][0] == "new3"
    assert reader.generation == KEEP_PREVIOUS + 3


def test_concurrent_readers_never_see_a_half_written_index(tmp_path: Path):
    embedder = BagOfWords()
    build_index(tmp_path, "things", CATALOG, embedder)
    reader = LoadedIndex(tmp_path, "things", embedder_for=lambda _t: embedder, check_interval_s=0)
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                generation = reader.snapshot()
                # A complete generation: every vector has its id and the manifest agrees.
                count = generation.manifest.count
                assert generation.index.ntotal == len(generation.entries) == count
                seen.add(generation.manifest.generation)
                assert reader.search("violin cello", k=1)[0][0] == "violin"
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for n in range(15):
            extra = [Item(f"x{i}", f"word{i} filler") for i in range(n % 4)]
            refresh_index(tmp_path, "things", [*CATALOG, *extra], embedder)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(seen) >= 2  # the readers really did cross generations
    assert os.readlink(tmp_path / "things" / "current") == "gen-000016"


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([1.0] * (DIM - 1), f"must have {DIM} numbers"),
        ([[1.0] * DIM], f"must have {DIM} numbers"),
        ([0.0] * DIM, "non-zero length"),
        ([float("nan")] + [1.0] * (DIM - 1), "NaN or infinity"),
        ([float("inf")] + [1.0] * (DIM - 1), "NaN or infinity"),
        (["a"] * DIM, "list of numbers"),
    ],
)
def test_bad_vectors_are_rejected(tmp_path: Path, vector: list[object], message: str):
    build_index(tmp_path, "things", CATALOG, BagOfWords())
    index = LoadedIndex(tmp_path, "things")
    with pytest.raises(InvalidInput, match=message):
        index.search(vector, k=1)  # type: ignore[arg-type]


def test_vector_search_and_k_bounds(tmp_path: Path):
    embedder = BagOfWords()
    build_index(tmp_path, "things", CATALOG, embedder)
    index = LoadedIndex(tmp_path, "things")
    # Huge but finite values normalise fine (computed in float64).
    query = [float(x) * 1e300 for x in embedder.embed(["ocean wave"])[0]]
    assert index.search(list(query), k=10)[0][0] == "ocean"
    assert len(index.search(list(query), k=10)) == 4  # k larger than the index
    # So do tiny ones (subnormal floats): only the direction matters.
    tiny = [float(x) * 1e-310 for x in embedder.embed(["violin"])[0]]
    assert index.search(tiny, k=1)[0][0] == "violin"
    with pytest.raises(InvalidInput, match="k must be between"):
        index.search(list(query), k=0)
    with pytest.raises(InvalidInput, match="vectors only"):
        index.search("ocean", k=1)


def test_registry_loads_on_demand_and_rejects_unknown_or_bad_names(tmp_path: Path):
    build_index(tmp_path, "things", CATALOG, BagOfWords())
    made: list[str] = []

    def factory(target: str) -> BagOfWords:
        made.append(target)
        return BagOfWords()

    registry = IndexRegistry(tmp_path, embedder_factory=factory)
    assert registry.names() == ["things"]
    assert registry.get("things") is registry.get("things")
    assert registry.get("things").search("piston", k=1)[0][0] == "engine"
    registry.get("things").search("ocean", k=1)
    assert made == ["bag-of-words"]  # one embedder per model target, made lazily
    with pytest.raises(IndexNotFound):
        registry.get("nope")
    with pytest.raises(InvalidInput):
        registry.get("../etc")


def test_text_query_with_a_different_model_is_refused(tmp_path: Path):
    build_index(tmp_path, "things", CATALOG, BagOfWords())

    class Other(BagOfWords):
        model_version = "2"

    index = LoadedIndex(tmp_path, "things", embedder_for=lambda _t: Other())
    with pytest.raises(InvalidInput, match="was built with bag-of-words 1"):
        index.search("ocean", k=1)


def test_markdown_is_split_into_headed_passages():
    text = "# Title\n\nIntro.\n\n## Refresh\n\nRun it daily.\n\n```\n# not a heading\n\nx\n```\n"
    sections = list(split_markdown(text))
    assert sections == [
        ("Title", "Intro."),
        ("Refresh", "Run it daily."),
        ("Refresh", "```\n# not a heading\n\nx\n```"),
    ]
    items = list(passages("docs/x.md", sections, max_chars=20))
    ids = [i.id for i in items]
    assert ids == ["docs/x.md#title-1", "docs/x.md#refresh-1", "docs/x.md#refresh-2"]
    assert items[1].text == "Refresh\n\nRun it daily."


def test_demo_corpora_are_real_offline_text(tmp_path: Path):
    root = Path(__file__).resolve().parents[1]
    docs = docs_items(root)
    assert docs and all(i.id.endswith(tuple("0123456789")) for i in docs)
    assert any(i.id.startswith("README.md#") for i in docs)
    assert len({i.id for i in docs}) == len(docs)
    help_items = corpus_items(Corpus.PYTHON_HELP)
    assert len(help_items) > 300
    assert any("while" in i.text and i.id.startswith("python-help/while") for i in help_items)
    assert write_items(tmp_path / "c.jsonl", docs) == len(docs)
    assert read_items(tmp_path / "c.jsonl") == docs


def test_current_generation_dir_of_missing_index(tmp_path: Path):
    with pytest.raises(IndexNotFound, match="no index named 'x'"):
        current_generation_dir(tmp_path, "x")


def test_cli_module_runs_and_lists_its_commands():
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run(
        [sys.executable, "-m", "tenfold.index.cli", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src, "NO_COLOR": "1", "COLUMNS": "120"},
        timeout=120,
        check=True,
    ).stdout
    for command in ("build", "refresh", "search", "demo"):
        assert command in out


def test_a_text_embedder_of_another_width_is_invalid_input(tmp_path: Path):
    build_index(tmp_path, "things", CATALOG, BagOfWords())

    class Wider(BagOfWords):
        def embed(self, texts: Sequence[str]) -> Matrix:
            return np.ones((len(texts), DIM * 2), dtype=np.float32)

    index = LoadedIndex(tmp_path, "things", embedder_for=lambda _t: Wider())
    with pytest.raises(InvalidInput, match=f"{DIM}-number vectors") as info:
        index.search("ocean", k=1)
    assert info.value.details == {"expected": DIM, "got": [1, DIM * 2]}
