"""Materialization from the real offline sources: the local PostgreSQL and SQLite files."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from tenfold.cache import from_url
from tenfold.clock import FakeClock
from tenfold.errors import FeatureLoadError
from tenfold.features import FeatureStore, FeatureView
from tenfold.features.cli import app, resolve_view
from tenfold.features.example import (
    USER_COLUMNS,
    drop_table,
    seed_users,
    user_features,
    user_row,
    user_source,
)
from tenfold.features.sql import SqlSource, connect, dialect_of, redact, sqlite_path

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["postgresql", "sqlite"])
def source_table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A uniquely named table with 50 demo users; dropped afterwards."""
    url = PG_URL if request.param == "postgresql" else f"sqlite:///{tmp_path}/features.db"
    table = f"tf_users_{uuid.uuid4().hex[:10]}"
    seed_users(url, table=table, n=50, seed=1)
    try:
        yield url, table
    finally:
        drop_table(url, table)


def expected(i: int) -> dict[str, Any]:
    return dict(zip(USER_COLUMNS, user_row(i, seed=1)[1:], strict=True))


async def test_materialize_then_serve_without_touching_the_source(source_table: tuple[str, str]):
    url, table = source_table
    source = user_source(url, table=table)
    calls: list[int] = []

    def counting_load(ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        calls.append(len(ids))
        return source.load(ids)

    view = FeatureView(
        "users", "user_id", counting_load, max_batch=20, list_entities=source.entity_ids
    )
    clock = FakeClock()
    backend = from_url("memory://", clock=clock)
    store = FeatureStore(backend, views=[view])
    report = await store.materialize("users")
    assert (report.requested, report.stored, report.missing, report.loader_calls) == (50, 50, 0, 3)
    assert calls == [20, 20, 10]
    # Serving now reads the online store only.
    ids = ["u00000", "u00017", "u00049", "u99999"]
    rows = await store.get_many("users", ids)
    assert rows[:3] == [expected(0), expected(17), expected(49)]
    assert rows[3] is None
    assert calls == [20, 20, 10, 1]  # only the unknown id went to the source
    # The source changes; a materialize pushes the new value before any TTL expiry.
    with connect(url) as conn:
        mark = dialect_of(url).placeholder
        conn.execute(f"UPDATE {table} SET orders_30d = 777 WHERE user_id = {mark}", ("u00017",))
    assert (await store.get("users", "u00017"))["orders_30d"] != 777  # type: ignore[index]
    report = await store.materialize("users", ["u00017", "u12345"])
    assert (report.stored, report.missing) == (1, 1)
    assert (await store.get("users", "u00017"))["orders_30d"] == 777  # type: ignore[index]
    # Materialized entries live ttl_s (1 h) from the materialization.
    before = len(calls)
    clock.advance(3599)
    await store.get("users", "u00017")
    assert len(calls) == before
    clock.advance(2)
    await store.get("users", "u00017")
    assert len(calls) == before + 1
    await backend.close()


def test_postgres_and_sqlite_sources_agree(tmp_path: Path):
    table = f"tf_users_{uuid.uuid4().hex[:10]}"
    lite = f"sqlite:///{tmp_path}/x.db"
    seed_users(PG_URL, table=table, n=30, seed=4)
    seed_users(lite, table=table, n=30, seed=4)
    try:
        ids = ["u00003", "u00029", "u00011", "missing"]
        pg_rows = user_source(PG_URL, table=table).load(ids)
        lite_rows = user_source(lite, table=table).load(ids)
        assert pg_rows == lite_rows
        assert set(pg_rows) == {"u00003", "u00029", "u00011"}
        assert user_source(PG_URL, table=table).entity_ids()[:2] == ["u00000", "u00001"]
    finally:
        drop_table(PG_URL, table)


def test_sql_source_urls_identifiers_and_errors(tmp_path: Path):
    assert sqlite_path("sqlite:///rel.db") == "rel.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    with pytest.raises(ValueError, match="unknown source URL scheme 'mysql'"):
        SqlSource("mysql://h/db", table="t", key_column="k", columns=("a",))
    with pytest.raises(ValueError, match="plain SQL identifier"):
        SqlSource(PG_URL, table="t; DROP TABLE x", key_column="k", columns=("a",))
    missing = SqlSource(f"sqlite:///{tmp_path}/none.db", "no_such_table", "k", ("a",))
    with pytest.raises(FeatureLoadError, match="no such table"):
        missing.load(["x"])
    down = SqlSource("postgresql://postgres@127.0.0.1:1/test", "t", "k", ("a",))
    with pytest.raises(FeatureLoadError, match="postgresql source"):
        down.load(["x"])


@pytest.mark.redis
def test_cli_materialize_into_redis(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/cli.db"
    runner = CliRunner()
    seeded = runner.invoke(app, ["seed-demo", "--source", url, "--users", "40"])
    assert seeded.exit_code == 0, seeded.output
    # The bundled view's keys live under the default namespace; delete exactly ours after.
    store_keys = FeatureStore(from_url("memory://"), views=[user_features(url)])
    view = store_keys.view("users")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("u00001\nu00002\n\nnot-a-user\n")
    client = redis.Redis.from_url(REDIS_URL)
    keys = [store_keys.key(view, f"u{i:05d}") for i in range(40)]
    try:
        client.delete(*keys)
        done = runner.invoke(
            app,
            [
                "materialize",
                "users",
                "--source",
                url,
                "--cache",
                REDIS_URL,
                "--entities",
                str(ids_file),
            ],
        )
        assert done.exit_code == 0, done.output
        assert "2 stored, 1 not in the source" in done.stderr
        assert client.exists(*keys) == 2
        done = runner.invoke(app, ["materialize", "users", "--source", url, "--cache", REDIS_URL])
        assert done.exit_code == 0, done.output
        assert "40 stored, 0 not in the source, 1 loader calls" in done.stderr
        assert client.exists(*keys) == 40
        ttl = client.ttl(keys[0])
        assert 3500 < ttl <= 3600

        async def served() -> dict[str, Any] | None:
            backend = from_url(REDIS_URL)
            try:
                return await FeatureStore(backend, views=[user_features(url)]).get(
                    "users", "u00007"
                )
            finally:
                await backend.close()

        assert asyncio.run(served()) == dict(zip(USER_COLUMNS, user_row(7)[1:], strict=True))
    finally:
        client.delete(*keys)
        client.close()
    refused = runner.invoke(app, ["materialize", "users", "--cache", "memory://"])
    assert refused.exit_code == 2 and "memory:// lives inside one process" in refused.stderr
    unknown = runner.invoke(app, ["materialize", "nope", "--cache", REDIS_URL])
    assert unknown.exit_code == 2 and "MODULE:ATTR" in unknown.stderr


def test_resolve_view_accepts_instances_and_factories():
    view = resolve_view("tenfold.features.example:user_features", "sqlite:///x.db")
    assert view.name == "users" and view.ttl_s == 3600
    with pytest.raises(ValueError, match="cannot load feature view"):
        resolve_view("tenfold.features.example:nope")
    with pytest.raises(ValueError, match="neither a FeatureView"):
        resolve_view("tenfold.features.example:USER_COLUMNS")
