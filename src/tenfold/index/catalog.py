"""Catalog items: what an index is built from.

A catalog is a JSONL file, one item a line: ``{"id": "doc-1", "text": "..."}``.
Each item's content hash (SHA-256 of its text) tells ``refresh`` whether it
changed since the last build, so only new or changed items are re-embedded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from tenfold.errors import InvalidInput

MAX_TEXT_CHARS = 10_000


def content_hash(text: str) -> str:
    """SHA-256 hex digest of the UTF-8 text: the change detector for ``refresh``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    text: str

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidInput("an item id must be a non-empty string")
        if not self.text or len(self.text) > MAX_TEXT_CHARS:
            raise InvalidInput(
                f"item {self.id!r}: text must have 1 to {MAX_TEXT_CHARS} characters",
                details={"id": self.id, "chars": len(self.text)},
            )

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


def parse_items(lines: Iterable[str], *, source: str = "<items>") -> Iterator[Item]:
    """Parse JSONL lines into items; blank lines are skipped, errors name the line."""
    for _, item in _numbered_items(lines, source):
        yield item


def _numbered_items(lines: Iterable[str], source: str) -> Iterator[tuple[int, Item]]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"{source}:{lineno}: not valid JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise InvalidInput(f"{source}:{lineno}: expected an object with 'id' and 'text'")
        item_id, text = record.get("id"), record.get("text")
        # Integer ids are common in catalogs exported from databases; store them as text.
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)
        if not isinstance(item_id, str) or not isinstance(text, str):
            raise InvalidInput(f"{source}:{lineno}: 'id' (string) and 'text' (string) required")
        try:
            item = Item(item_id, text)
        except InvalidInput as exc:
            raise InvalidInput(f"{source}:{lineno}: {exc.message}") from exc
        yield lineno, item


def unique_items(items: Iterable[Item]) -> list[Item]:
    """Reject duplicate ids: two texts under one id would make search answers ambiguous."""
    return _unique((None, item) for item in items)


def _unique(numbered: Iterable[tuple[int | None, Item]], source: str = "") -> list[Item]:
    """As :func:`unique_items`, naming both lines when the items carry line numbers."""
    first_line: dict[str, int | None] = {}
    out: list[Item] = []
    for lineno, item in numbered:
        if item.id in first_line:
            if lineno is None:
                raise InvalidInput(f"duplicate item id {item.id!r} in the catalog")
            raise InvalidInput(
                f"{source}:{lineno}: duplicate item id {item.id!r} "
                f"(first at line {first_line[item.id]})"
            )
        first_line[item.id] = lineno
        out.append(item)
    return out


def read_items(path: Path) -> list[Item]:
    """Read a JSONL catalog file."""
    try:
        with path.open(encoding="utf-8") as f:
            return _unique(_numbered_items(f, str(path)), str(path))
    except OSError as exc:
        raise InvalidInput(f"cannot read catalog {path}: {exc.strerror}") from exc


def write_items(path: Path, items: Iterable[Item]) -> int:
    """Write items as JSONL (used by the demo corpus); returns the count."""
    n = 0
    with path.open("wb") as f:
        for item in items:
            f.write(orjson.dumps({"id": item.id, "text": item.text}) + b"\n")
            n += 1
    return n
