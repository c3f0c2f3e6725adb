"""Waiting on an SQLite queue is woken by commits of other connections (processes):
none may fall in the gap between a waiter's read and the change watcher's start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from queue_helpers import only_notifications_wake
from tenfold.queue import JobStatus, from_url


async def test_a_commit_between_the_read_and_the_watcher_start_wakes_the_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter reads the job (queued), then another connection completes it before
    the change watcher takes its baseline: the waiter must still wake at once, not
    after the 1 s fallback re-check (a CI failure of the contract test). The re-check is
    pushed past the wait here: unwoken, the waiter sleeps to its 5 s timeout."""
    only_notifications_wake(monkeypatch)
    url = f"sqlite:///{tmp_path}/q.db"
    api, worker = from_url(url), from_url(url)
    try:
        job = await api.enqueue("m", 21)
        [claim] = await worker.claim("m", 1, wait_ms=0, lease_ms=10_000, worker_id="w")
        real_get = api.get
        completed = False

        async def get_then_commit_elsewhere(job_id: str):  # type: ignore[no-untyped-def]
            nonlocal completed
            seen = await real_get(job_id)
            if not completed:
                completed = True
                assert await worker.complete(claim.job.id, claim.token, 42)
            return seen

        api.get = get_then_commit_elsewhere  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        started = loop.time()
        done = await api.wait(job.id, 5)
        waited_s = loop.time() - started
    finally:
        await api.close()
        await worker.close()
    assert completed and done.status is JobStatus.SUCCEEDED and done.result == 42
    assert waited_s < 2.5, f"woken after {waited_s:.3f} s: the timeout, not the watcher"
