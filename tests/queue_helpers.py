"""Shared helpers for the queue tests (real SQLite files, real Redis)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from redis_support import REDIS_URL, RedisServer, delete_prefix, free_port, own_redis

__all__ = [
    "REDIS_URL",
    "RedisServer",
    "delete_prefix",
    "free_port",
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
