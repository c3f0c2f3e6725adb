"""Hypothesis state machine over the SQLite backend: random interleavings of
enqueue, claim, heartbeat, complete, fail, release, cancel, requeue and time.

Invariants: one terminal state per job (succeeded/failed/cancelled never
change; dead changes only by requeue_dead), at most one valid lease per job
(only the newest claim's token is ever accepted, and only while running),
attempts never above max_attempts, a result stored at most once per job.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tenfold.clock import FakeClock
from tenfold.queue import JobError, JobStatus, QueueConfig, RetryPolicy
from tenfold.queue.sqlite import SqliteQueue

MAX_ATTEMPTS = 3
FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tenfold-qsm-"))
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(start=1_700_000_000.0)
        self.q = SqliteQueue(
            self.dir / "q.db",
            config=QueueConfig(
                retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay_s=0.5, max_delay_s=2.0),
                result_ttl_s=1e9,  # keep every job visible to the invariants
            ),
            clock=self.clock,
            rng=random.Random(0),
        )
        self.jobs: list[str] = []
        self.tokens: dict[str, list[str]] = {}  # every token issued per job, newest last
        self.final: dict[str, JobStatus] = {}
        self.results: dict[str, int] = {}
        self.most_attempts = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        # Steer the search toward jobs with many attempts, where the limit is at stake.
        target(float(self.most_attempts), label="most attempts")
        self.run(self.q.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def newest(self, job: str) -> str | None:
        toks = self.tokens.get(job)
        return toks[-1] if toks else None

    def pick(self, data: st.DataObject) -> tuple[str, str] | None:
        with_tokens = [j for j in self.jobs if self.tokens.get(j)]
        if not with_tokens:
            return None
        job = data.draw(st.sampled_from(with_tokens))
        token = data.draw(st.sampled_from(self.tokens[job]))
        return job, token

    def rows(self) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.dir / "q.db")
        try:
            return conn.execute("SELECT id, status, attempts, lease_token FROM jobs").fetchall()
        finally:
            conn.close()

    @initialize()
    def start(self) -> None:
        self.run(self.q.enqueue("m", 0))
        self.jobs.extend(r[0] for r in self.rows())

    @rule(key=st.sampled_from([None, "a", "b"]))
    def enqueue(self, key: str | None) -> None:
        job = self.run(self.q.enqueue("m", len(self.jobs), idempotency_key=key))
        if job.id not in self.jobs:
            self.jobs.append(job.id)

    @rule(n=st.integers(1, 3), lease_ms=st.sampled_from([500, 1500]))
    def claim(self, n: int, lease_ms: int) -> None:
        claims = self.run(self.q.claim("m", n, wait_ms=0, lease_ms=lease_ms, worker_id="w"))
        assert len(claims) <= n
        for c in claims:
            assert c.job.id not in self.final, "a finished job was claimed again"
            assert 1 <= c.job.attempts <= MAX_ATTEMPTS
            assert c.token not in self.tokens.get(c.job.id, [])
            self.tokens.setdefault(c.job.id, []).append(c.token)

    @rule()
    def worker_dies(self) -> None:
        """A worker claims, then is killed: its lease runs out with no further call."""
        self.claim(2, 500)
        self.clock.advance(0.6)

    @rule(seconds=st.sampled_from([0.1, 0.6, 1.6, 3.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        picked = self.pick(data)
        if picked is None:
            return
        job, token = picked
        if self.run(self.q.heartbeat(job, token, 1000)):
            assert token == self.newest(job), "a superseded lease was renewed"

    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        picked = self.pick(data)
        if picked is None:
            return
        job, token = picked
        if self.run(self.q.complete(job, token, {"by": token})):
            assert token == self.newest(job), "a superseded lease completed the job"
            assert job not in self.results, "a second result was stored"
            self.results[job] = 1
            self.final[job] = JobStatus.SUCCEEDED

    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        picked = self.pick(data)
        if picked is None:
            return
        job, token = picked
        status = self.run(self.q.fail(job, token, JobError("E", "x"), retryable=retryable))
        if status is not None:
            assert token == self.newest(job)
            if status in FINAL:
                self.final[job] = status

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        picked = self.pick(data)
        if picked is not None and self.run(self.q.release(*picked)):
            assert picked[1] == self.newest(picked[0])

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(self.jobs))
        if self.run(self.q.cancel(job)):
            assert job not in self.final
            self.final[job] = JobStatus.CANCELLED

    @rule()
    def requeue_dead(self) -> None:
        self.run(self.q.requeue_dead("m"))

    @invariant()
    def states_are_consistent(self) -> None:
        rows = self.rows()
        self.most_attempts = max([self.most_attempts, *(r[2] for r in rows)])
        for job_id, status_raw, attempts, lease_token in rows:
            status = JobStatus(status_raw)
            assert 0 <= attempts <= MAX_ATTEMPTS
            if job_id in self.final:
                assert status is self.final[job_id], "a terminal job changed state"
            # at most one valid lease: only a running job holds one, and it is the newest
            if status is JobStatus.RUNNING:
                assert lease_token is not None and lease_token == self.newest(job_id)
            else:
                assert lease_token is None


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
