"""The offline demo corpora: real text, split into passages, no download.

* ``docs``: tenfold's own documentation (``README.md`` and ``docs/*.md`` of the
  source tree), split at headings and paragraphs into passages of at most
  ~``max_chars`` characters. Ids look like ``docs/index.md#refresh-2``.
* ``python-help``: the help topics that ship with CPython (``pydoc_data``,
  what ``help("FOR")`` shows), split the same way; available in any install.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path

from tenfold.index.catalog import Item

DEFAULT_MAX_CHARS = 800


class Corpus(StrEnum):
    DOCS = "docs"
    PYTHON_HELP = "python-help"


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:48] or "section"


def split_markdown(text: str) -> Iterator[tuple[str, str]]:
    """Yield ``(section heading, paragraph)`` pairs; fenced code stays with its paragraph."""
    heading = ""
    paragraph: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            paragraph.append(line)
            continue
        match = None if in_fence else _HEADING.match(line)
        if match or (not in_fence and not line.strip()):
            if paragraph:
                yield heading, "\n".join(paragraph).strip()
                paragraph = []
            if match:
                heading = match.group(2)
            continue
        paragraph.append(line)
    if paragraph:
        yield heading, "\n".join(paragraph).strip()


def passages(
    source: str, sections: Iterable[tuple[str, str]], *, max_chars: int = DEFAULT_MAX_CHARS
) -> Iterator[Item]:
    """Merge consecutive paragraphs of one section up to ``max_chars``; prefix the heading
    so a passage carries its context (a bare paragraph often does not say what it is about)."""
    counts: dict[str, int] = {}
    buffer: list[str] = []
    current = ""

    def flush() -> Iterator[Item]:
        if not buffer:
            return
        body = "\n\n".join(buffer)
        text = f"{current}\n\n{body}" if current else body
        slug = _slug(current)
        counts[slug] = counts.get(slug, 0) + 1
        yield Item(f"{source}#{slug}-{counts[slug]}", text[:10_000])
        buffer.clear()

    for heading, paragraph in sections:
        if not paragraph.strip():
            continue
        if heading != current or sum(map(len, buffer)) + len(paragraph) > max_chars:
            yield from flush()
            current = heading
        buffer.append(paragraph)
    yield from flush()


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest directory at or above ``start`` (default: cwd, then this package's
    source tree) that has ``pyproject.toml`` and ``README.md``: where the docs live."""
    starts = [start] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for base in starts:
        for directory in [base, *base.parents]:
            if (directory / "pyproject.toml").is_file() and (directory / "README.md").is_file():
                return directory
    return None


def docs_items(root: Path, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[Item]:
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    items: list[Item] = []
    for path in files:
        if path.is_file():
            source = path.relative_to(root).as_posix()
            text = path.read_text(encoding="utf-8")
            items.extend(passages(source, split_markdown(text), max_chars=max_chars))
    return items


def python_help_items(*, max_chars: int = DEFAULT_MAX_CHARS) -> list[Item]:
    from pydoc_data.topics import topics

    items: list[Item] = []
    for topic in sorted(topics):
        # Help topics are plain text: paragraphs separated by blank lines, no headings.
        sections = ((topic, p.strip()) for p in re.split(r"\n\s*\n", topics[topic]) if p.strip())
        items.extend(passages(f"python-help/{topic}", sections, max_chars=max_chars))
    return items


def corpus_items(corpus: Corpus, *, root: Path | None = None) -> list[Item]:
    if corpus is Corpus.PYTHON_HELP:
        return python_help_items()
    project = find_project_root(root)
    if project is None:
        raise FileNotFoundError(
            "no tenfold source tree found (README.md + pyproject.toml) above the current "
            "directory; run from a checkout, pass --root, or use --corpus python-help"
        )
    return docs_items(project)
