"""Shared helpers for the cache tests: a real ``redis-server`` on a free port."""

from __future__ import annotations

import uuid

from redis_support import RedisServer, free_port

__all__ = ["MAIN_REDIS_URL", "RedisServer", "free_port", "unique_prefix"]

MAIN_REDIS_URL = "redis://127.0.0.1:6379/0"


def unique_prefix() -> str:
    return f"tenfold-test:{uuid.uuid4().hex[:12]}:"
