"""On-disk layout of an index and its atomic generation swap.

::

    ROOT/NAME/
        current -> gen-000007        symlink, replaced atomically (rename(2))
        gen-000007/
            manifest.json            model, dimension, count, generation
            index.faiss              IndexFlatIP over L2-normalised vectors
            entries.jsonl            {"id", "hash"} per vector, in index order
        gen-000006/                  kept so a reader that resolved it keeps working
        .lock                        flock held by build/refresh (one writer at a time)

A writer builds a complete ``gen-N`` under a temporary name, renames it into
place, then points ``current`` at it with one ``rename`` of a fresh symlink
over the old one. A reader resolves ``current`` once and reads that directory,
so it sees the old generation or the new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson

from tenfold.errors import IndexNotFound, InvalidInput
from tenfold.index.embedder import Matrix

FORMAT_VERSION = 1
CURRENT = "current"
_GEN_RE = re.compile(r"^gen-(\d{6,})$")
# Names become directory names and URL path segments: keep them boring.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Generations kept besides the current one, for readers that resolved an older one.
KEEP_PREVIOUS = 2


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    generation: int
    model_target: str
    model_name: str
    model_version: str
    dim: int
    count: int
    #: Absolute path of the catalog it was built from; ``refresh`` re-reads it.
    items_path: str
    created_unix_s: float
    metric: str = "inner_product"
    normalized: bool = True
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw: dict[str, Any] = orjson.loads(data)
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported index format {raw.get('format_version')!r}")
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    hash: str


@dataclass(frozen=True, slots=True)
class Generation:
    """One complete, immutable generation loaded into memory."""

    manifest: Manifest
    index: Any  # faiss.IndexFlatIP (faiss ships no type hints)
    entries: tuple[Entry, ...]

    def vectors(self) -> Matrix:
        n = self.index.ntotal
        if n == 0:
            return np.zeros((0, self.manifest.dim), dtype=np.float32)
        out: Matrix = self.index.reconstruct_n(0, n)
        return out


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"index name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
            "and start with a letter or digit"
        )
    return name


def index_dir(root: Path, name: str) -> Path:
    return root / check_name(name)


def list_names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if _NAME_RE.match(p.name) and (p / CURRENT).is_symlink()
    )


def current_generation_dir(root: Path, name: str) -> Path:
    """Resolve ``current`` once; raises :class:`IndexNotFound` when there is none."""
    base = index_dir(root, name)
    try:
        target = os.readlink(base / CURRENT)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise IndexNotFound(f"no index named {name!r} under {root}") from exc
    return base / target


def current_generation_number(root: Path, name: str) -> int:
    match = _GEN_RE.match(current_generation_dir(root, name).name)
    if match is None:
        raise ValueError(f"index {name!r}: 'current' points at an unexpected name")
    return int(match.group(1))


def read_generation(path: Path) -> Generation:
    manifest = Manifest.from_json((path / "manifest.json").read_bytes())
    index = faiss.read_index(str(path / "index.faiss"))
    entries = tuple(
        Entry(**orjson.loads(line))
        for line in (path / "entries.jsonl").read_bytes().splitlines()
        if line
    )
    if index.ntotal != len(entries) or index.ntotal != manifest.count:
        raise ValueError(f"index generation {path} is inconsistent (vectors != entries)")
    return Generation(manifest, index, entries)


def load_current(root: Path, name: str, *, attempts: int = 3) -> Generation:
    """Load the current generation, retrying if a writer pruned it between resolve and read."""
    for attempt in range(attempts):
        path = current_generation_dir(root, name)
        try:
            return read_generation(path)
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def writer_lock(root: Path, name: str) -> Iterator[Path]:
    """One writer per index: a cron refresh overlapping a manual one waits instead of racing."""
    base = index_dir(root, name)
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield base
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _existing_generations(base: Path) -> list[int]:
    gens = []
    for p in base.iterdir():
        match = _GEN_RE.match(p.name)
        if match and p.is_dir():
            gens.append(int(match.group(1)))
    return sorted(gens)


def next_generation(base: Path) -> int:
    gens = _existing_generations(base)
    return (gens[-1] + 1) if gens else 1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def publish_generation(
    base: Path, manifest: Manifest, vectors: Matrix, entries: Sequence[Entry]
) -> Path:
    """Write a complete generation and swap ``current`` to it. Call under :func:`writer_lock`.

    ``vectors`` must already be L2-normalised float32, one row per entry.
    """
    if vectors.shape != (len(entries), manifest.dim) or manifest.count != len(entries):
        raise ValueError("vectors, entries and manifest disagree on the shape")
    final = base / f"gen-{manifest.generation:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-gen-", dir=base))
    try:
        index = faiss.IndexFlatIP(manifest.dim)
        if len(entries):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        faiss.write_index(index, str(tmp / "index.faiss"))
        with (tmp / "index.faiss").open("rb") as f:
            os.fsync(f.fileno())
        _write_file(
            tmp / "entries.jsonl",
            b"".join(orjson.dumps({"id": e.id, "hash": e.hash}) + b"\n" for e in entries),
        )
        # The manifest goes last: a generation directory with a manifest is complete.
        _write_file(tmp / "manifest.json", manifest.to_json())
        _fsync_dir(tmp)
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    link_tmp = base / f".tmp-current-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        link_tmp.unlink()
    os.symlink(final.name, link_tmp)  # relative: the directory can be moved as a whole
    os.replace(link_tmp, base / CURRENT)
    _fsync_dir(base)
    _prune(base, keep_from=manifest.generation - KEEP_PREVIOUS)
    return final


def _prune(base: Path, *, keep_from: int) -> None:
    for gen in _existing_generations(base):
        if gen < keep_from:
            shutil.rmtree(base / f"gen-{gen:06d}", ignore_errors=True)
    for stale in base.glob(".tmp-gen-*"):
        # Leftovers of a writer that crashed; we hold the writer lock, so none is live.
        shutil.rmtree(stale, ignore_errors=True)
