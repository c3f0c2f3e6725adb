"""SQL offline sources, chosen by URL: PostgreSQL (psycopg 3) or SQLite.

::

    source = SqlSource("postgresql://postgres@127.0.0.1:5432/test", table="user_features",
                       key_column="user_id", columns=("country", "orders_30d"))
    source.load(["u1", "u2"])     # {"u1": {"country": "DE", "orders_30d": 3}, ...}
    source.entity_ids()           # every key, for materialize

URLs: ``postgresql://user@host:port/db`` (or ``postgres://``) and
``sqlite:///relative.db`` / ``sqlite:////absolute/path.db``. One connection
per call: loads are batched, so a call carries hundreds of entities, and
neither driver's connection may be shared across the worker threads loads
run on. Keys are compared as text. Driver errors become
:class:`tenfold.errors.FeatureLoadError` with the password redacted.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from tenfold.errors import FeatureLoadError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: SQLite's default limit on host parameters is 999 in older builds.
_SQLITE_CHUNK = 900


class Dialect(StrEnum):
    POSTGRES = "postgresql"
    SQLITE = "sqlite"

    @property
    def placeholder(self) -> str:
        return "%s" if self is Dialect.POSTGRES else "?"


def dialect_of(url: str) -> Dialect:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return Dialect.POSTGRES
    if scheme == "sqlite":
        return Dialect.SQLITE
    raise ValueError(
        f"unknown source URL scheme {scheme!r} in {redact(url)!r}; "
        "use postgresql://user@host:port/db or sqlite:///path.db"
    )


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def sqlite_path(url: str) -> str:
    rest = url.split("://", 1)[1]
    if not rest or rest == "/":
        raise ValueError("sqlite URL needs a file: sqlite:///relative.db or sqlite:////abs.db")
    # sqlite:///x.db -> "x.db"; sqlite:////tmp/x.db -> "/tmp/x.db" (the usual convention).
    return rest[1:] if rest.startswith("/") else rest


def quote_ident(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise ValueError(f"{name!r} is not a plain SQL identifier (letters, digits, _)")
    return ".".join(f'"{p}"' for p in parts)


@contextmanager
def connect(url: str) -> Iterator[Any]:
    """A DB-API connection for ``url``, committed on success, closed always."""
    dialect = dialect_of(url)
    try:
        if dialect is Dialect.POSTGRES:
            import psycopg

            with psycopg.connect(url, connect_timeout=5) as pg:
                yield pg
        else:
            lite = sqlite3.connect(sqlite_path(url), timeout=5.0)
            try:
                yield lite
                lite.commit()
            finally:
                lite.close()
    except (sqlite3.Error, _psycopg_error()) as exc:
        raise FeatureLoadError(f"{dialect.value} source {redact(url)}: {exc}") from exc


def _psycopg_error() -> type[Exception]:
    try:
        import psycopg
    except ImportError:  # the extra is not installed: only SQLite URLs work
        return sqlite3.Error
    return psycopg.Error


@dataclass(frozen=True, slots=True)
class SqlSource:
    url: str
    table: str
    key_column: str
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        dialect_of(self.url)
        for name in (self.table, self.key_column, *self.columns):
            quote_ident(name)
        if not self.columns:
            raise ValueError("a source needs at least one feature column")

    @property
    def dialect(self) -> Dialect:
        return dialect_of(self.url)

    def load(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One query per call (per 900 ids on SQLite): ``{id: {column: value}}``."""
        if not ids:
            return {}
        select = ", ".join(quote_ident(c) for c in (self.key_column, *self.columns))
        base = f"SELECT {select} FROM {quote_ident(self.table)} WHERE "
        out: dict[str, dict[str, Any]] = {}
        with connect(self.url) as conn:
            if self.dialect is Dialect.POSTGRES:
                key = f"CAST({quote_ident(self.key_column)} AS TEXT)"
                rows = conn.execute(base + f"{key} = ANY(%s)", (list(ids),)).fetchall()
            else:
                rows = []
                for start in range(0, len(ids), _SQLITE_CHUNK):
                    chunk = list(ids[start : start + _SQLITE_CHUNK])
                    marks = ", ".join("?" * len(chunk))
                    sql = base + f"{quote_ident(self.key_column)} IN ({marks})"
                    rows.extend(conn.execute(sql, chunk).fetchall())
        for row in rows:
            out[str(row[0])] = dict(zip(self.columns, row[1:], strict=True))
        return out

    def entity_ids(self) -> list[str]:
        sql = (
            f"SELECT {quote_ident(self.key_column)} FROM {quote_ident(self.table)} "
            f"ORDER BY {quote_ident(self.key_column)}"
        )
        with connect(self.url) as conn:
            return [str(row[0]) for row in conn.execute(sql).fetchall()]
