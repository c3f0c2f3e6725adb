"""Several queue objects (one SQLite connection each, as separate processes have)
opening the same fresh file at the same moment must all work: the schema set-up
retries instead of failing with "database is locked" (seen once in CI)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tenfold.queue import JobStatus, from_url

OPENERS = 6
TRIALS = 30


async def test_concurrent_first_open_of_a_fresh_file(tmp_path: Path) -> None:
    for trial in range(TRIALS):
        url = f"sqlite:///{tmp_path}/q{trial}.db"
        queues = [from_url(url) for _ in range(OPENERS)]
        try:
            jobs = await asyncio.gather(*(q.enqueue("m", i) for i, q in enumerate(queues)))
            stats = await queues[0].stats("m")
        finally:
            for q in queues:
                await q.close()
        assert sorted(j.input for j in jobs) == list(range(OPENERS))
        assert all(j.status is JobStatus.QUEUED for j in jobs)
        assert stats.queued == OPENERS
