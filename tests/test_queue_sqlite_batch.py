"""SQLite enqueues made together share one transaction (a group commit); each answers as if
alone. The database call is slowed down (a real SQLite, a sleep before it) so that which
calls share a transaction is decided by the test, not by the machine's speed."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tenfold.errors import QueueUnavailable
from tenfold.queue import Job
from tenfold.queue.sqlite import SqliteQueue


def slowed(q: SqliteQueue, delay_s: float) -> None:
    real = q._enqueue_calls_sync

    def slow(calls: Any) -> Any:
        time.sleep(delay_s)  # in the database thread: stands for a slow disk
        return real(calls)

    q._enqueue_calls_sync = slow  # type: ignore[method-assign]


@pytest.fixture
async def q(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    queue = SqliteQueue(tmp_path / "q.db")
    await queue.depth("m")  # opened
    yield queue
    await queue.close()


async def test_close_during_a_batch_answers_the_jobs_it_wrote(q: SqliteQueue) -> None:
    slowed(q, 0.3)
    calls = [asyncio.create_task(q.enqueue("m", i)) for i in range(5)]
    await asyncio.sleep(0.4)  # the first went alone; the other four are in the thread now
    await q.close()
    out = await asyncio.gather(*calls, return_exceptions=True)
    # Before: the four got QueueUnavailable("closed") though their jobs were committed, so
    # a client would submit them again.
    assert all(isinstance(j, Job) for j in out), out
    again = SqliteQueue(q.path)
    try:
        assert await again.depth("m") == 5
    finally:
        await again.close()


async def test_one_calls_database_error_fails_only_that_call(q: SqliteQueue) -> None:
    await q._call(lambda: q._db().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000))
    slowed(q, 0.1)
    inputs = ["x" * (5000 if i == 3 else 1) for i in range(5)]  # #3 exceeds SQLite's limit
    out = await asyncio.gather(*(q.enqueue("m", x) for x in inputs), return_exceptions=True)
    assert isinstance(out[3], QueueUnavailable), out
    assert all(isinstance(out[i], Job) for i in (0, 1, 2, 4)), out
    assert await q.depth("m") == 4
    assert q._enqueues.round_trips == 2  # the first alone, the other four together
