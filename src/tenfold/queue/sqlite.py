"""SQLite queue backend: ``sqlite:///path/queue.db`` (one host, many processes).

The recipe (NOTES §2): WAL journal; ``busy_timeout``; ``isolation_level=None``
with an explicit ``BEGIN IMMEDIATE`` around every read-then-write (a deferred
BEGIN that upgrades to a write gets SQLITE_BUSY without waiting); a claim is
one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` that also takes
expired leases; heartbeat, complete, fail and release are
``UPDATE ... WHERE id=? AND lease_token=?`` (fenced). No inference ever runs
inside a transaction.

Every SQLite call runs on one dedicated thread that owns the connection, so
the event loop never blocks on disk or on another process's lock.

Waiting (``claim`` with ``wait_ms``, ``wait``): writes made through this
object wake waiters at once (an in-process asyncio signal). Writes by other
processes are noticed by one watcher task that reads ``PRAGMA data_version``
every ``poll_interval_ms`` (default 50 ms; an unchanged database costs no
query on the jobs table), with a 1 s re-check as a last resort. SQLite has no
cross-process notification, and this keeps idle cost near zero.

``synchronous=NORMAL`` (the default) survives any process crash; add
``?synchronous=full`` to the URL to also survive power loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tenfold.errors import JobNotFound, QueueFull, QueueUnavailable, TenfoldError
from tenfold.queue import codec
from tenfold.queue.backend import check_claim_args, queue_full, wait_accepted
from tenfold.queue.ids import new_job_id, new_token
from tenfold.queue.job import Claim, Job, JobError, JSONValue, QueueConfig, QueueStats
from tenfold.queue.notify import ChangeSignal
from tenfold.queue.policy import decide_failure
from tenfold.queue.status import JobStatus
from tenfold.queue.wallclock import NowClock, WallClock
from tenfold.roundtrips import BatcherClosed, RoundTripBatcher

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    queued_at REAL NOT NULL,
    -- queued: when it may be claimed; running: when its lease expires; otherwise NULL.
    due_at REAL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    error TEXT,
    result TEXT,
    idempotency_key TEXT,
    lease_token TEXT,
    worker_id TEXT
);
-- One ordered index serves claims (queued and expired leases alike) and depth counts.
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(model, due_at, status)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs(model) WHERE status = 'dead';
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs(model, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_expires ON jobs(expires_at) WHERE expires_at IS NOT NULL;
-- One row per claim call, for the average-wait statistic over a window.
CREATE TABLE IF NOT EXISTS claims (
    model TEXT NOT NULL, at REAL NOT NULL, n INTEGER NOT NULL, wait_sum_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_model_at ON claims(model, at);
"""

# One statement each, run by _init_schema inside a single write transaction.
_SCHEMA_STATEMENTS = [
    stmt.strip()
    for stmt in "\n".join(
        line for line in _SCHEMA.splitlines() if not line.strip().startswith("--")
    ).split(";")
    if stmt.strip()
]

_COLUMNS = (
    "id, model, input, status, attempts, created_at, updated_at, queued_at, started_at, "
    "finished_at, error, result, idempotency_key"
)
#: One enqueue call: (model, [(payload JSON, idempotency key or None)], max_depth).
_EnqueueCall = tuple[str, list[tuple[str, str | None]], int | None]
_PURGE_EVERY_S = 10.0
_FALLBACK_RECHECK_S = 1.0


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        model=row[1],
        input=codec.loads(row[2]),
        status=JobStatus(row[3]),
        attempts=row[4],
        created_at=row[5],
        updated_at=row[6],
        queued_at=row[7],
        started_at=row[8],
        finished_at=row[9],
        error=codec.loads_error(row[10]),
        result=codec.loads(row[11]),
        idempotency_key=row[12],
    )


class SqliteQueue:
    """See the module docstring. Build with :func:`tenfold.queue.from_url`."""

    def __init__(
        self,
        path: str | Path,
        *,
        config: QueueConfig | None = None,
        clock: NowClock | None = None,
        rng: random.Random | None = None,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be off, normal, full or extra, not {synchronous!r}")
        self.path = str(path)
        self.config = config or QueueConfig()
        self._clock = clock or WallClock()
        self._rng = rng or random.Random()
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenfold-sqlite")
        self._changed = ChangeSignal()
        self._waiting = 0
        self._watcher: asyncio.Task[None] | None = None
        self._last_purge = -math.inf
        self._closed = False
        # Enqueues made while one is in the database thread go in together: one transaction.
        self._enqueues: RoundTripBatcher[_EnqueueCall, list[Job] | TenfoldError] = RoundTripBatcher(
            self._enqueue_round_trip, failure=self._queue_error, name="tenfold-sqlite-enqueue"
        )

    def __repr__(self) -> str:
        return f"SqliteQueue({self.path!r})"

    # -- plumbing -------------------------------------------------------------------------

    def _closed_error(self) -> QueueUnavailable:
        return QueueUnavailable(f"{self!r} is closed")

    def _unavailable(self, exc: Exception) -> QueueUnavailable:
        return QueueUnavailable(f"sqlite queue {self.path}: {exc}")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise self._closed_error()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=self._busy_timeout_ms / 1000,
                check_same_thread=False,  # only the executor thread ever uses it
            )
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            try:
                _init_schema(conn, self._busy_timeout_ms / 1000)
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _now(self) -> float:
        return self._clock.now()

    # -- operations -----------------------------------------------------------------------

    async def enqueue(
        self,
        model: str,
        input: JSONValue,
        idempotency_key: str | None = None,
        *,
        max_depth: int | None = None,
    ) -> Job:
        payload = codec.dumps(input)
        got = await self._enqueues.call((model, [(payload, idempotency_key)], max_depth))
        if isinstance(got, TenfoldError):  # this call's own failure, not its batch-mates'
            raise got
        self._changed.notify()
        return got[0]

    async def _enqueue_round_trip(
        self, calls: list[_EnqueueCall]
    ) -> list[list[Job] | TenfoldError]:
        return await self._call(self._enqueue_calls_sync, calls)

    def _queue_error(self, exc: Exception) -> Exception:
        if isinstance(exc, BatcherClosed):
            return self._closed_error()
        if isinstance(exc, TenfoldError):
            return exc
        return self._unavailable(exc)

    def _enqueue_calls_sync(self, calls: list[_EnqueueCall]) -> list[list[Job] | TenfoldError]:
        """Enqueues made together, in one transaction (one commit: a group commit), each in
        its own savepoint: one refused by ``max_depth``, or failed by its own statements,
        adds nothing and fails alone. An error that ends the transaction itself fails the
        batch (nothing of it was committed)."""
        conn = self._db()
        out: list[list[Job] | TenfoldError] = []
        with _immediate(conn):
            for model, items, max_depth in calls:
                conn.execute("SAVEPOINT enqueue")
                try:
                    out.append(self._enqueue_in(conn, model, items, max_depth))
                except (QueueFull, sqlite3.Error) as exc:
                    if not conn.in_transaction:  # SQLite rolled it all back: fail the batch
                        raise
                    conn.execute("ROLLBACK TO enqueue")
                    out.append(exc if isinstance(exc, QueueFull) else self._unavailable(exc))
                conn.execute("RELEASE enqueue")
        return out

    async def enqueue_many(self, model: str, inputs: Sequence[JSONValue]) -> list[Job]:
        payloads = [(codec.dumps(x), None) for x in inputs]
        jobs = await self._call(self._enqueue_sync, model, payloads)
        self._changed.notify()
        return jobs

    def _enqueue_sync(
        self, model: str, items: list[tuple[str, str | None]], max_depth: int | None = None
    ) -> list[Job]:
        """The jobs; :class:`QueueFull` (everything rolled back) past ``max_depth``."""
        conn = self._db()
        with _immediate(conn):
            return self._enqueue_in(conn, model, items, max_depth)

    def _enqueue_in(
        self,
        conn: sqlite3.Connection,
        model: str,
        items: list[tuple[str, str | None]],
        max_depth: int | None,
    ) -> list[Job]:
        """Inside the caller's transaction: the jobs, or :class:`QueueFull` past
        ``max_depth`` (the caller rolls back what this added)."""
        now = self._now()
        out: list[Job] = []
        for payload, key in items:
            if key is not None:
                row = conn.execute(
                    f"SELECT {_COLUMNS}, expires_at FROM jobs "
                    "WHERE model = ? AND idempotency_key = ?",
                    (model, key),
                ).fetchone()
                if row is not None:
                    if row[13] is None or row[13] > now:
                        out.append(_job(row))
                        continue
                    # The earlier job expired: the key is free again.
                    conn.execute("DELETE FROM jobs WHERE id = ?", (row[0],))
            if max_depth is not None and self._depth_in(conn, model) >= max_depth:
                raise queue_full(model, max_depth)
            job_id = new_job_id(now)
            conn.execute(
                "INSERT INTO jobs (id, model, input, status, attempts, created_at, "
                "updated_at, queued_at, due_at, idempotency_key) "
                "VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?)",
                (job_id, model, payload, now, now, now, now, key),
            )
            out.append(Job.new(job_id, model, codec.loads(payload), now, key))
        return out

    async def claim(
        self, model: str, max_items: int, *, wait_ms: float, lease_ms: float, worker_id: str
    ) -> list[Claim]:
        check_claim_args(max_items, lease_ms)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_ms) / 1000
        while True:
            marker = self._changed.marker()
            claims, dead = await self._call(
                self._claim_sync, model, max_items, lease_ms / 1000, worker_id
            )
            if dead:
                self._changed.notify()
            remaining = deadline - loop.time()
            if claims or remaining <= 0 or self._closed:
                return claims
            await self._wait_change(marker, remaining)

    def _claim_sync(
        self, model: str, max_items: int, lease_s: float, worker_id: str
    ) -> tuple[list[Claim], int]:
        conn = self._db()
        now = self._now()
        token = new_token()
        with _immediate(conn):
            # Leases that ran out on the last allowed attempt: the worker keeps dying on
            # this job (or stalls), so dead-letter it instead of running it again.
            dead = conn.execute(
                "UPDATE jobs SET status = 'dead', due_at = NULL, lease_token = NULL, "
                "finished_at = :now, updated_at = :now, error = json_object('type', "
                "'LeaseExpired', 'message', 'lease expired on attempt ' || attempts || "
                "': the worker died or stalled') "
                "WHERE model = :model AND status IN ('queued', 'running') AND due_at <= :now "
                "AND status = 'running' AND attempts >= :max RETURNING id",
                {"now": now, "model": model, "max": self.config.retry.max_attempts},
            ).fetchall()
            # queued_at becomes when the job last became claimable (its old due_at: for a
            # queued job the same, or a retry's due time; for an expired lease, the expiry),
            # so its wait does not count the previous run and lease as queue time.
            rows = conn.execute(
                f"UPDATE jobs SET status = 'running', attempts = attempts + 1, "
                "queued_at = MAX(queued_at, due_at), "
                "lease_token = :token, due_at = :expires, started_at = :now, updated_at = :now, "
                "worker_id = :worker "
                "WHERE id IN (SELECT id FROM jobs WHERE model = :model "
                "AND status IN ('queued', 'running') AND due_at <= :now "
                "ORDER BY due_at LIMIT :n) "
                f"RETURNING {_COLUMNS}",
                {
                    "token": token,
                    "expires": now + lease_s,
                    "now": now,
                    "worker": worker_id,
                    "model": model,
                    "n": max_items,
                },
            ).fetchall()
            if rows:
                conn.execute(
                    "INSERT INTO claims (model, at, n, wait_sum_s) VALUES (?, ?, ?, ?)",
                    (model, now, len(rows), sum(max(0.0, now - r[7]) for r in rows)),
                )
            if now - self._last_purge >= _PURGE_EVERY_S:
                self._purge(conn, now)
                self._last_purge = now
        claims = [Claim(_job(r), token, now + lease_s) for r in rows]
        claims.sort(key=lambda c: c.job.queued_at)
        return claims, len(dead)

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM jobs WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM claims WHERE at < ?", (now - self.config.stats_window_s,))

    async def heartbeat(self, job_id: str, token: str, lease_ms: float) -> bool:
        return await self._call(self._heartbeat_sync, job_id, token, lease_ms / 1000)

    def _heartbeat_sync(self, job_id: str, token: str, lease_s: float) -> bool:
        now = self._now()
        cur = self._db().execute(
            "UPDATE jobs SET due_at = ?, updated_at = ? "
            "WHERE id = ? AND lease_token = ? AND status = 'running'",
            (now + lease_s, now, job_id, token),
        )
        return cur.rowcount == 1

    async def complete(self, job_id: str, token: str, result: JSONValue) -> bool:
        ok = await self._call(self._complete_sync, job_id, token, codec.dumps(result))
        if ok:
            self._changed.notify()
        return ok

    def _complete_sync(self, job_id: str, token: str, result: str) -> bool:
        return self._complete_rows(self._db(), [(job_id, token, result)])[0]

    def _complete_rows(
        self, conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str]]
    ) -> list[bool]:
        now = self._now()
        expires = now + self.config.result_ttl_s
        return [
            conn.execute(
                "UPDATE jobs SET status = 'succeeded', result = ?, error = NULL, due_at = NULL, "
                "lease_token = NULL, finished_at = ?, updated_at = ?, expires_at = ? "
                "WHERE id = ? AND lease_token = ? AND status = 'running'",
                (result, now, now, expires, job_id, token),
            ).rowcount
            == 1
            for job_id, token, result in rows
        ]

    async def complete_many(self, results: Sequence[tuple[str, str, JSONValue]]) -> list[bool]:
        rows = [(job_id, token, codec.dumps(r)) for job_id, token, r in results]
        oks = await self._call(self._complete_many_sync, rows)
        if any(oks):
            self._changed.notify()
        return oks

    def _complete_many_sync(self, rows: list[tuple[str, str, str]]) -> list[bool]:
        conn = self._db()
        with _immediate(conn):  # one commit for the batch
            return self._complete_rows(conn, rows)

    async def fail(
        self, job_id: str, token: str, error: JobError, *, retryable: bool = True
    ) -> JobStatus | None:
        status = await self._call(
            self._fail_sync, job_id, token, codec.dumps_error(error), retryable
        )
        if status is not None:
            self._changed.notify()
        return status

    def _fail_sync(
        self, job_id: str, token: str, error: str | None, retryable: bool
    ) -> JobStatus | None:
        conn = self._db()
        now = self._now()
        with _immediate(conn):
            row = conn.execute(
                "SELECT attempts FROM jobs WHERE id = ? AND lease_token = ? AND status = 'running'",
                (job_id, token),
            ).fetchone()
            if row is None:
                return None
            decision = decide_failure(
                row[0], retryable=retryable, policy=self.config.retry, now=now, rng=self._rng
            )
            if decision.status is JobStatus.QUEUED:
                conn.execute(
                    "UPDATE jobs SET status = 'queued', due_at = ?, queued_at = ?, "
                    "lease_token = NULL, error = ?, updated_at = ? WHERE id = ?",
                    (decision.due_at, decision.due_at, error, now, job_id),
                )
            else:
                expires = now + self.config.result_ttl_s if decision.status.terminal else None
                if decision.status is JobStatus.DEAD:
                    expires = None  # dead letters stay until requeued
                conn.execute(
                    "UPDATE jobs SET status = ?, due_at = NULL, lease_token = NULL, error = ?, "
                    "finished_at = ?, updated_at = ?, expires_at = ? WHERE id = ?",
                    (decision.status.value, error, now, now, expires, job_id),
                )
        return decision.status

    async def release(self, job_id: str, token: str) -> bool:
        ok = await self._call(self._release_sync, job_id, token)
        if ok:
            self._changed.notify()
        return ok

    def _release_sync(self, job_id: str, token: str) -> bool:
        now = self._now()
        cur = self._db().execute(
            # A release gives the job back unrun (graceful shutdown): not an attempt.
            "UPDATE jobs SET status = 'queued', due_at = ?, queued_at = ?, lease_token = NULL, "
            "attempts = MAX(attempts - 1, 0), "
            "updated_at = ? WHERE id = ? AND lease_token = ? AND status = 'running'",
            (now, now, now, job_id, token),
        )
        return cur.rowcount == 1

    async def cancel(self, job_id: str) -> bool:
        ok = await self._call(self._cancel_sync, job_id)
        if ok:
            self._changed.notify()
        return ok

    def _cancel_sync(self, job_id: str) -> bool:
        now = self._now()
        cur = self._db().execute(
            "UPDATE jobs SET status = 'cancelled', due_at = NULL, finished_at = ?, "
            "updated_at = ?, expires_at = ? WHERE id = ? AND status = 'queued'",
            (now, now, now + self.config.result_ttl_s, job_id),
        )
        return cur.rowcount == 1

    async def requeue_dead(self, model: str) -> int:
        n = await self._call(self._requeue_dead_sync, model)
        if n:
            self._changed.notify()
        return n

    def _requeue_dead_sync(self, model: str) -> int:
        now = self._now()
        cur = self._db().execute(
            "UPDATE jobs SET status = 'queued', attempts = 0, error = NULL, due_at = ?, "
            "queued_at = ?, finished_at = NULL, updated_at = ? "
            "WHERE model = ? AND status = 'dead'",
            (now, now, now, model),
        )
        return cur.rowcount

    async def get(self, job_id: str) -> Job | None:
        return await self._call(self._get_sync, job_id)

    def _get_sync(self, job_id: str) -> Job | None:
        row = (
            self._db()
            .execute(f"SELECT {_COLUMNS}, expires_at FROM jobs WHERE id = ?", (job_id,))
            .fetchone()
        )
        if row is None or (row[13] is not None and row[13] <= self._now()):
            return None
        return _job(row)

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        while True:
            marker = self._changed.marker()
            job = await self.get(job_id)
            if job is None:
                raise JobNotFound(f"job {job_id} not found (unknown or expired)")
            remaining = deadline - loop.time()
            if job.status.terminal or remaining <= 0:
                return job
            await self._wait_change(marker, remaining)

    async def enqueue_and_wait(
        self,
        model: str,
        input: JSONValue,
        idempotency_key: str | None = None,
        *,
        max_depth: int | None = None,
        wait_s: float,
    ) -> Job:
        job = await self.enqueue(model, input, idempotency_key, max_depth=max_depth)
        return await wait_accepted(self, job, wait_s)

    async def depth(self, model: str) -> int:
        return await self._call(self._depth_sync, model)

    def _depth_sync(self, model: str) -> int:
        return self._depth_in(self._db(), model)

    @staticmethod
    def _depth_in(conn: sqlite3.Connection, model: str) -> int:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE model = ? AND status IN ('queued', 'running') "
            "AND status = 'queued'",
            (model,),
        ).fetchone()
        return int(row[0])

    async def stats(self, model: str) -> QueueStats:
        return await self._call(self._stats_sync, model)

    def _stats_sync(self, model: str) -> QueueStats:
        conn = self._db()
        now = self._now()
        window = self.config.stats_window_s
        # A lease that ran out is not leased (its worker is gone): it is claimable, queued
        # since it expired (its due_at).
        queued, leased, oldest = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'queued' OR due_at <= :now), "
            "count(*) FILTER (WHERE status = 'running' AND due_at > :now), "
            "min(CASE WHEN status = 'queued' THEN queued_at WHEN due_at <= :now THEN due_at END) "
            "FROM jobs WHERE model = :model AND status IN ('queued', 'running')",
            {"model": model, "now": now},
        ).fetchone()
        dead = conn.execute(
            "SELECT count(*) FROM jobs WHERE model = ? AND status = 'dead'", (model,)
        ).fetchone()[0]
        n, wait_sum = conn.execute(
            "SELECT sum(n), sum(wait_sum_s) FROM claims WHERE model = ? AND at >= ?",
            (model, now - window),
        ).fetchone()
        return QueueStats(
            model=model,
            queued=int(queued),
            leased=int(leased),
            dead=int(dead),
            oldest_queued_age_s=max(0.0, now - oldest) if oldest is not None else 0.0,
            avg_wait_s=(wait_sum / n) if n else None,
            window_s=window,
        )

    async def models(self) -> list[str]:
        rows = await self._call(
            lambda: self._db().execute("SELECT DISTINCT model FROM jobs ORDER BY model").fetchall()
        )
        return [r[0] for r in rows]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._enqueues.close(finish_in_flight=True)  # answer what was written
        self._changed.notify()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- cross-process change detection ---------------------------------------------------

    async def _wait_change(self, marker: asyncio.Event, timeout_s: float) -> None:
        self._waiting += 1
        try:
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.create_task(self._watch(), name="tenfold-sqlite-watch")
            await ChangeSignal.wait(marker, min(timeout_s, _FALLBACK_RECHECK_S))
        finally:
            self._waiting -= 1

    async def _watch(self) -> None:
        """Notify waiters when another process commits; stop when nobody waits.

        A waiter read the state before this watcher took its baseline, so another
        process may have committed in between, unseen by both: the baseline is
        followed by one notification, and the waiters read again (seen in CI: a
        completion in that gap waited for the 1 s fallback).
        """
        last = await self._call(self._data_version)
        self._changed.notify()
        while self._waiting > 0 and not self._closed:
            await asyncio.sleep(self.config.poll_interval_ms / 1000)
            try:
                version = await self._call(self._data_version)
            except QueueUnavailable:
                continue
            if version != last:
                last = version
                self._changed.notify()

    def _data_version(self) -> int:
        return int(self._db().execute("PRAGMA data_version").fetchone()[0])


def _init_schema(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch to WAL and create the schema, safe against other processes opening the
    same fresh file at the same moment.

    Two traps, both seen as "database is locked" without the busy handler waiting:
    a plain ``CREATE ... IF NOT EXISTS`` is a deferred transaction that reads the
    schema and then upgrades to a write, which fails at once (SQLITE_BUSY_SNAPSHOT)
    when another process created the tables in between; and switching the journal
    mode needs an exclusive lock that a concurrent opener may briefly hold. So the
    DDL runs inside ``BEGIN IMMEDIATE`` and both steps retry until ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0].lower()
            if mode not in ("wal", "memory"):
                # The pragma answers the mode it ended in: not "wal" means another
                # connection held the lock the switch needs. Try again.
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower()
                if mode != "wal":
                    raise sqlite3.OperationalError("database is locked (switching to WAL)")
            with _immediate(conn):
                for statement in _SCHEMA_STATEMENTS:
                    conn.execute(statement)
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: take the write lock up front (waiting up to
    ``busy_timeout``) so a read-then-write never fails half-way with SQLITE_BUSY."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
