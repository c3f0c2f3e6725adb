"""Shared helpers for the queue tests (real SQLite files, real Redis)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from redis_support import REDIS_URL, RedisServer, delete_prefix, free_port, own_redis

__all__ = [
    "REDIS_URL",
    "RedisServer",
    "delete_prefix",
    "free_port",
    "only_notifications_wake",
    "own_redis",
    "src_env",
    "unique_prefix",
]


def unique_prefix() -> str:
    return "tq" + uuid.uuid4().hex[:12]


def src_env() -> dict[str, str]:
    """Environment for child processes: this worktree's src/ first on the path."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    tests = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join([src, tests, env.get("PYTHONPATH", "")])
    return env


def only_notifications_wake(monkeypatch: pytest.MonkeyPatch, recheck_s: float = 60.0) -> None:
    """Push the backends' last-resort re-check of a waiting ``wait``/``claim`` (1 s on SQLite
    and Redis) past every wait in the calling test. A waiter that then wakes before its own
    timeout was woken by a notification, however slow the machine: a wake-up test can give
    the wake generous time, instead of racing the 1 s re-check with a sub-second bound."""
    from tenfold.queue import redis_streams, sqlite

    monkeypatch.setattr(sqlite, "_FALLBACK_RECHECK_S", recheck_s)
    monkeypatch.setattr(redis_streams, "_RECHECK_S", recheck_s)
