"""The bundled feature view: user features from PostgreSQL or SQLite.

::

    seed_users("postgresql://postgres@127.0.0.1:5432/test", n=1000)   # demo rows
    users = user_features("postgresql://postgres@127.0.0.1:5432/test")
    store = FeatureStore(backend, views=[users])
    await store.get_many("users", ["u00001", "u00002"])

The table: ``user_id TEXT PRIMARY KEY, country, plan, signup_days,
orders_30d, avg_order_usd``. The default URL is an SQLite file in the current
directory (the embedded default: no server needed).
"""

from __future__ import annotations

import random

from tenfold.features.sql import Dialect, SqlSource, connect, dialect_of, quote_ident
from tenfold.features.view import DEFAULT_TTL_S, FeatureView

DEFAULT_SOURCE_URL = "sqlite:///tenfold-features.db"
DEFAULT_TABLE = "user_features"
USER_COLUMNS = ("country", "plan", "signup_days", "orders_30d", "avg_order_usd")
_COUNTRIES = ("DE", "FR", "US", "JP", "BR", "IN", "GB", "NG")
_PLANS = ("free", "pro", "team")


def user_source(url: str = DEFAULT_SOURCE_URL, *, table: str = DEFAULT_TABLE) -> SqlSource:
    return SqlSource(url, table=table, key_column="user_id", columns=USER_COLUMNS)


def user_features(
    url: str = DEFAULT_SOURCE_URL, *, table: str = DEFAULT_TABLE, ttl_s: float = DEFAULT_TTL_S
) -> FeatureView:
    source = user_source(url, table=table)
    return FeatureView(
        name="users",
        entity_key="user_id",
        loader=source.load,
        ttl_s=ttl_s,
        version="1",
        list_entities=source.entity_ids,
    )


def user_id(i: int) -> str:
    return f"u{i:05d}"


def user_row(i: int, seed: int = 0) -> tuple[str, str, str, int, int, float]:
    """Deterministic demo values for user ``i``."""
    rng = random.Random(seed * 1_000_003 + i)
    orders = rng.randint(0, 20)
    return (
        user_id(i),
        rng.choice(_COUNTRIES),
        rng.choice(_PLANS),
        rng.randint(1, 2000),
        orders,
        round(rng.uniform(5, 300), 2) if orders else 0.0,
    )


def seed_users(
    url: str = DEFAULT_SOURCE_URL, *, table: str = DEFAULT_TABLE, n: int = 1000, seed: int = 0
) -> int:
    """Create the table if needed and upsert ``n`` demo users; returns ``n``."""
    name = quote_ident(table)
    mark = dialect_of(url).placeholder
    columns = ("user_id", *USER_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in USER_COLUMNS)
    insert = (
        f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))}) "
        f"ON CONFLICT (user_id) DO UPDATE SET {updates}"
    )
    rows = [user_row(i, seed) for i in range(n)]
    with connect(url) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} (user_id TEXT PRIMARY KEY, country TEXT NOT NULL, "
            "plan TEXT NOT NULL, signup_days INTEGER NOT NULL, orders_30d INTEGER NOT NULL, "
            "avg_order_usd DOUBLE PRECISION NOT NULL)"
        )
        if dialect_of(url) is Dialect.POSTGRES:
            with conn.cursor() as cur:
                cur.executemany(insert, rows)
        else:
            conn.executemany(insert, rows)
    return n


def drop_table(url: str, table: str = DEFAULT_TABLE) -> None:
    with connect(url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
