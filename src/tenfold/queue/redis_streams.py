"""Redis Streams queue backend: ``redis://host:port/db`` (workers on many machines).

One stream per model with one consumer group (``workers``). A claim is one
Lua script: promote due retries onto the stream, re-claim expired leases
(``XCLAIM``, which bumps the entry's delivery count), dead-letter jobs whose
attempts are spent, then ``XREADGROUP >`` for new entries; the job hash is
the record every transition updates. Heartbeats use ``XCLAIM ... JUSTID`` to
keep the pending entry fresh without counting a delivery; a finished attempt
is ``XACK`` + ``XDEL`` (never ``MAXLEN``). If the group is gone (``NOGROUP``:
a Redis restart without persistence, a deleted or evicted stream) it is
recreated from id 0, queued jobs whose entries went with the stream get new
ones, and the claim is retried. Every read-then-write is one script (see
:mod:`tenfold.queue.redis_lua`); the Python side only computes values.

Leases are measured by the injected clock and stored in a sorted set rather
than by Redis' own idle time (``XAUTOCLAIM``'s single min-idle threshold),
because each claim chooses its own ``lease_ms`` and tests drive time by hand.
The Redis instance needs ``maxmemory-policy noeviction`` and, for durability
of acknowledged submissions, AOF (``appendonly yes``).

``wait`` subscribes to one shared ``P:done`` pub/sub channel (one connection
per backend object), and re-checks every second in case a message was lost
(pub/sub is fire-and-forget across reconnects); a listener that loses its
connection resubscribes while anyone waits and wakes them all to read their
jobs again. A small finished job travels
inside its notification (see :data:`~tenfold.queue.redis_lua.NOTIFY_MAX_BYTES`),
so the waiter that submitted it reads nothing back: with ``enqueue_and_wait``,
a job costs the API one round trip to Redis; enqueues made while one is in flight share
the next (one pipeline of script calls: :class:`tenfold.roundtrips.RoundTripBatcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from tenfold.errors import JobNotFound, QueueUnavailable, TenfoldError
from tenfold.queue import codec, redis_lua
from tenfold.queue.backend import check_claim_args, queue_full, wait_accepted
from tenfold.queue.ids import new_job_id, new_token
from tenfold.queue.job import Claim, Job, JobError, JSONValue, QueueConfig, QueueStats
from tenfold.queue.notify import ChangeSignal
from tenfold.queue.policy import decide_failure
from tenfold.queue.status import JobStatus
from tenfold.queue.wallclock import NowClock, WallClock
from tenfold.roundtrips import BatcherClosed, RoundTripBatcher

T = TypeVar("T")

log = logging.getLogger("tenfold.queue.redis")

GROUP = "workers"
_RECHECK_S = 1.0
_SHORT_WAIT_S = 0.2
#: The pub/sub listener's resubscribe backoff after a lost connection: first and longest.
_RESUBSCRIBE_FIRST_S = 0.05
_RESUBSCRIBE_MAX_S = 2.0

#: Error replies that say "not now" rather than "wrong": a failover's demoted primary
#: (READONLY), a full Redis under noeviction (OOM), a restart replaying its AOF (LOADING),
#: a failed background save (MISCONF), a replica cut off from its primary (MASTERDOWN,
#: NOREPLICAS), a long script (BUSY), a role change unblocking XREAD (UNBLOCKED), cluster
#: moves (TRYAGAIN, CLUSTERDOWN). A script's ``redis.call`` error keeps its code, after
#: a leading ``-`` when Redis wraps it ("Error running script ... -READONLY ...").
_UNAVAILABLE_CODES = re.compile(
    r"(?:^|\s-)(?:LOADING|MISCONF|READONLY|OOM|MASTERDOWN|NOREPLICAS|BUSY|UNBLOCKED"
    r"|TRYAGAIN|CLUSTERDOWN)\b"
)


def _unavailable(exc: BaseException) -> bool:
    """Whether a Redis error means the queue store cannot serve us now (-> 503, the worker
    backs off), as opposed to a bug of ours (a Lua error, wrong arguments), which stays one."""
    import redis.exceptions as rexc

    if isinstance(exc, (rexc.ConnectionError, rexc.TimeoutError, OSError)):
        return True  # BusyLoadingError (LOADING) is a ConnectionError
    if isinstance(
        exc,
        (rexc.ReadOnlyError, rexc.OutOfMemoryError, rexc.TryAgainError, rexc.ClusterDownError),
    ):
        return True
    return isinstance(exc, rexc.ResponseError) and bool(_UNAVAILABLE_CODES.search(str(exc)))


def _f(value: float) -> str:
    return repr(float(value))


def _opt_float(raw: str | None) -> float | None:
    return None if raw is None or raw == "" else float(raw)


def _job(h: dict[str, str]) -> Job:
    return Job(
        id=h["id"],
        model=h["model"],
        input=codec.loads(h["input"]),
        status=JobStatus(h["status"]),
        attempts=int(h.get("attempts", "0")),
        created_at=float(h["created_at"]),
        updated_at=float(h["updated_at"]),
        queued_at=float(h["queued_at"]),
        started_at=_opt_float(h.get("started_at")),
        finished_at=_opt_float(h.get("finished_at")),
        error=codec.loads_error(h.get("error")),
        result=codec.loads(h.get("result")),
        idempotency_key=h.get("idempotency_key"),
    )


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


def _notified_job(fields: str) -> Job | None:
    """The job a "done" notification carries, if any (``None``: read it back)."""
    if not fields:
        return None
    try:
        return _job(_pairs(codec.loads(fields)))
    except (ValueError, KeyError, TypeError):  # not ours to trust blindly: read it back
        return None


async def _drop_pubsub(pubsub: Any) -> None:
    """Close a pub/sub whose connection may be broken: disconnect that connection first, so
    the pool gets it back closed (it reconnects on its next use), never half-open."""
    connection = getattr(pubsub, "connection", None)
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.disconnect()
    with contextlib.suppress(Exception):
        await pubsub.aclose()


class _Watch:
    """One waiter on one job: woken by its "done" notification, which may carry the job."""

    __slots__ = ("event", "job")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.job: Job | None = None


class RedisQueue:
    """See the module docstring. Build with :func:`tenfold.queue.from_url`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tenfold",
        config: QueueConfig | None = None,
        clock: NowClock | None = None,
        rng: random.Random | None = None,
        max_connections: int = 64,
    ) -> None:
        if not prefix or ":" in prefix or "{" in prefix:
            raise ValueError(f"prefix must be non-empty without ':' or '{{', got {prefix!r}")
        self.url = url
        self.prefix = prefix
        self.config = config or QueueConfig()
        self._clock = clock or WallClock()
        self._rng = rng or random.Random()
        self._client: Any = None
        self._max_connections = max_connections
        self._scripts: dict[str, Any] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listener_lock: asyncio.Lock | None = None
        self._pubsub: Any = None
        self._waiters: dict[str, set[_Watch]] = {}
        self._closed = False
        # Concurrent enqueues (one per API request) share pipelined round trips.
        self._enqueues: RoundTripBatcher[list[Any], Any] = RoundTripBatcher(
            self._enqueue_round_trip, failure=self._queue_error, name="tenfold-queue-enqueue"
        )

    def __repr__(self) -> str:
        return f"RedisQueue({self.url!r}, prefix={self.prefix!r})"

    # -- plumbing -------------------------------------------------------------------------

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # No silent client-side retries: a retried script could run twice. Callers
            # (the worker loop, the API) decide what to do with QueueUnavailable.
            # A bounded pool that queues callers instead of failing ("Too many connections")
            # when an API process has many requests in flight. redis-py 7+ (RESP3) hands out
            # pooled connections without probing them; turning that probe back on (by
            # switching maintenance notifications off) cost 10-20% of classify jobs/s, so a
            # dead connection instead closes the pool's idle ones (_drop_idle_connections).
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self._max_connections,
                timeout=30,
                decode_responses=True,
                socket_connect_timeout=5,
                retry=Retry(NoBackoff(), 0),
            )
            self._client = aioredis.Redis(connection_pool=pool)
            for name in redis_lua.SCRIPT_NAMES:
                self._scripts[name] = self._client.register_script(getattr(redis_lua, name))
        return self._client

    async def _call(self, pending: Awaitable[T]) -> T:
        """Await a Redis call, translating Redis errors to ours at this one boundary (the
        pipelined path applies the same :func:`_unavailable` test to each reply)."""
        import redis.exceptions as rexc

        if self._closed:
            if asyncio.iscoroutine(pending):
                pending.close()
            raise QueueUnavailable(f"{self!r} is closed")
        try:
            return await pending
        except (rexc.RedisError, OSError) as exc:
            if _unavailable(exc):
                if isinstance(exc, rexc.ConnectionError | OSError):
                    await self._drop_idle_connections()
                raise self._unavailable_error(exc) from exc
            raise

    async def _drop_idle_connections(self) -> None:
        """A connection found dead (e.g. Redis restarted) says the idle ones in the pool are
        too: close them, so each is not found dead by a command of its own (redis-py with
        RESP3 no longer probes a pooled connection before use; probing costs every command)."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.connection_pool.disconnect(inuse_connections=False)

    def _unavailable_error(self, exc: BaseException) -> QueueUnavailable:
        return QueueUnavailable(f"redis queue {self.url}: {type(exc).__name__}: {exc}")

    async def _script(self, name: str, *args: Any) -> Any:
        self._redis()
        return await self._call(self._scripts[name](keys=[], args=[self.prefix, *args]))

    async def _script_many(self, name: str, arg_lists: Sequence[Sequence[Any]]) -> list[Any]:
        """Script ``name`` once per argument list, in one pipelined round trip.

        ``EVALSHA`` straight away: redis-py's script pipelines first ask ``SCRIPT EXISTS``,
        a second round trip on every call (a batch's results are written this way). A
        script Redis no longer holds (a restart, ``SCRIPT FLUSH``) fails ``NOSCRIPT``
        without running, so those calls are safe to run again once it is loaded.
        """
        import redis.exceptions as rexc

        client = self._redis()
        script = self._scripts[name]
        results: list[Any] = [None] * len(arg_lists)
        todo = list(range(len(arg_lists)))

        async def run(indices: list[int]) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for i in indices:
                    pipe.evalsha(script.sha, 0, self.prefix, *arg_lists[i])
                return list(await pipe.execute(raise_on_error=False))

        for _ in range(3):
            out = await self._call(run(todo))
            missing = []
            for i, got in zip(todo, out, strict=True):
                if isinstance(got, rexc.NoScriptError):
                    missing.append(i)
                elif isinstance(got, Exception):
                    if _unavailable(got):
                        raise self._unavailable_error(got) from got
                    raise got
                else:
                    results[i] = got
            if not missing:
                return results
            await self._call(client.script_load(script.script))
            todo = missing
        raise QueueUnavailable(f"redis queue {self.url}: script {name} keeps disappearing")

    def _key(self, kind: str, model: str) -> str:
        return f"{self.prefix}:{kind}:{model}"

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
        now = self._now()
        job, _ = await self._enqueue(new_job_id(now), now, model, input, idempotency_key, max_depth)
        return job

    async def _enqueue(
        self,
        job_id: str,
        now: float,
        model: str,
        input: JSONValue,
        idempotency_key: str | None,
        max_depth: int | None,
    ) -> tuple[Job, bool]:
        """Enqueue as ``job_id`` at ``now``: the job and whether it is that new one
        (``False``: an earlier job with the same idempotency key)."""
        payload = codec.dumps(input)
        limit = "" if max_depth is None else str(int(max_depth))
        got = await self._enqueues.call(
            [job_id, model, payload, _f(now), idempotency_key or "", limit]
        )
        if isinstance(got, list):  # the idempotency key names a live earlier job
            return _job(_pairs(got)), False
        if got == "!full":
            raise queue_full(model, max_depth)
        return Job.new(job_id, model, codec.loads(payload), now, idempotency_key), True

    async def _enqueue_round_trip(self, calls: list[list[Any]]) -> list[Any]:
        if len(calls) == 1:
            return [await self._script("ENQUEUE", *calls[0])]
        return await self._script_many("ENQUEUE", calls)

    def _queue_error(self, exc: Exception) -> Exception:
        if isinstance(exc, BatcherClosed):
            return QueueUnavailable(f"redis queue {self.url}: closed")
        if isinstance(exc, TenfoldError):
            return exc
        return self._unavailable_error(exc)

    async def enqueue_many(self, model: str, inputs: Sequence[JSONValue]) -> list[Job]:
        now = self._now()
        payloads = [codec.dumps(x) for x in inputs]
        ids = [new_job_id(now) for _ in inputs]
        pairs = zip(ids, payloads, strict=True)
        await self._script_many("ENQUEUE", [[i, model, x, _f(now), ""] for i, x in pairs])
        return [
            Job.new(job_id, model, codec.loads(payload), now)
            for job_id, payload in zip(ids, payloads, strict=True)
        ]

    async def _ensure_group(self, model: str) -> None:
        import redis.exceptions as rexc

        client = self._redis()
        try:
            # From id 0: entries already on the stream (never delivered, or pending in a
            # group that was lost) are delivered again; the claim script drops stale ones.
            await self._call(
                client.xgroup_create(self._key("stream", model), GROUP, id="0", mkstream=True)
            )
        except rexc.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _recover_group(self, model: str) -> None:
        """After ``NOGROUP``: recreate the group and, if the stream itself was lost (evicted
        or deleted while the job records survive), put queued jobs back on it."""
        await self._ensure_group(model)
        added = await self._script("REPAIR", model)
        if added:
            log.warning("redis queue %s: re-added %d lost stream entries of %r", self, added, model)

    async def claim(
        self, model: str, max_items: int, *, wait_ms: float, lease_ms: float, worker_id: str
    ) -> list[Claim]:
        import redis.exceptions as rexc

        check_claim_args(max_items, lease_ms)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_ms) / 1000
        client = self._redis()
        while True:
            now = self._now()
            token = new_token()
            expires = now + lease_ms / 1000
            args = (
                model,
                _f(now),
                max_items,
                _f(expires),
                token,
                worker_id,
                self.config.retry.max_attempts,
                GROUP,
                str(math.floor(now)),
                _f(self.config.stats_window_s),
            )
            try:
                out = await self._script("CLAIM", *args)
            except rexc.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._recover_group(model)
                out = await self._script("CLAIM", *args)
            claims = [Claim(_job(_pairs(flat)), token, expires) for flat in out[2:]]
            remaining = deadline - loop.time()
            if claims or remaining <= 0 or self._closed:
                return claims
            if remaining < _SHORT_WAIT_S:
                # Redis checks blocking timeouts only ~10 times a second (hz 10): a short
                # BLOCK would overrun to ~100 ms. Wait here and look once more instead.
                await asyncio.sleep(remaining)
                continue
            last_id = str(out[1]) or "0-0"
            # Block until an entry is appended after the one we last saw (or time runs out).
            block_ms = max(1, int(remaining * 1000))
            await self._call(
                client.xread({self._key("stream", model): last_id}, count=1, block=block_ms)
            )

    async def heartbeat(self, job_id: str, token: str, lease_ms: float) -> bool:
        now = self._now()
        got = await self._script(
            "HEARTBEAT", job_id, token, _f(now + lease_ms / 1000), _f(now), GROUP
        )
        return bool(got)

    async def complete(self, job_id: str, token: str, result: JSONValue) -> bool:
        payload = codec.dumps(result)
        now = self._now()
        ttl = self.config.result_ttl_s
        got = await self._script(
            "COMPLETE", job_id, token, payload, _f(now), _f(now + ttl), int(ttl * 1000), GROUP
        )
        return bool(got)

    async def complete_many(self, results: Sequence[tuple[str, str, JSONValue]]) -> list[bool]:
        now = self._now()
        ttl = self.config.result_ttl_s
        tail = [_f(now), _f(now + ttl), int(ttl * 1000), GROUP]
        out = await self._script_many(
            "COMPLETE",
            [[job_id, token, codec.dumps(r), *tail] for job_id, token, r in results],
        )
        return [bool(x) for x in out]

    async def fail(
        self, job_id: str, token: str, error: JobError, *, retryable: bool = True
    ) -> JobStatus | None:
        client = self._redis()
        fields: list[str | None] = await self._call(
            client.hmget(f"{self.prefix}:job:{job_id}", "status", "token", "attempts")
        )
        status, held, attempts = fields
        if status != JobStatus.RUNNING.value or held != token or attempts is None:
            return None
        now = self._now()
        # Safe to decide outside the script: attempts changes only with a new claim, which
        # changes the token, and the script applies the decision only under this token.
        decision = decide_failure(
            int(attempts), retryable=retryable, policy=self.config.retry, now=now, rng=self._rng
        )
        ttl = self.config.result_ttl_s
        got = await self._script(
            "FAIL",
            job_id,
            token,
            decision.status.value,
            _f(decision.due_at) if decision.due_at is not None else "",
            codec.dumps_error(error),
            _f(now),
            _f(now + ttl),
            int(ttl * 1000),
            GROUP,
        )
        return decision.status if got else None

    async def release(self, job_id: str, token: str) -> bool:
        return bool(await self._script("RELEASE", job_id, token, _f(self._now()), GROUP))

    async def cancel(self, job_id: str) -> bool:
        now = self._now()
        ttl = self.config.result_ttl_s
        got = await self._script("CANCEL", job_id, _f(now), _f(now + ttl), int(ttl * 1000), GROUP)
        return bool(got)

    async def requeue_dead(self, model: str) -> int:
        return int(await self._script("REQUEUE_DEAD", model, _f(self._now())))

    async def get(self, job_id: str) -> Job | None:
        client = self._redis()
        h = await self._call(client.hgetall(f"{self.prefix}:job:{job_id}"))
        if not h or "status" not in h:
            return None
        expires = _opt_float(h.get("expires_at"))
        if expires is not None and expires <= self._now():
            return None
        return _job(h)

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        watch = self._watch(job_id)
        try:
            await self._ensure_listener()
            return await self._wait_watched(job_id, watch, deadline, None)
        finally:
            self._unwatch(job_id, watch)

    async def enqueue_and_wait(
        self,
        model: str,
        input: JSONValue,
        idempotency_key: str | None = None,
        *,
        max_depth: int | None = None,
        wait_s: float,
    ) -> Job:
        # The waiter is registered under the new job's id *before* the enqueue, so the
        # "done" notification cannot slip past it, and the job is known to be queued
        # after the enqueue: no first read. One round trip fewer than enqueue + wait.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_s)
        now = self._now()
        job_id = new_job_id(now)
        watch = self._watch(job_id)
        try:
            await self._ensure_listener()
            job, fresh = await self._enqueue(job_id, now, model, input, idempotency_key, max_depth)
            if not fresh:  # an idempotent resubmission: wait on the earlier job
                return await wait_accepted(self, job, deadline - loop.time())
            try:
                return await self._wait_watched(job_id, watch, deadline, job)
            except TenfoldError:
                return job  # accepted: an error would make the caller submit it again
        finally:
            self._unwatch(job_id, watch)

    def _watch(self, job_id: str) -> _Watch:
        watch = _Watch()
        self._waiters.setdefault(job_id, set()).add(watch)
        return watch

    def _unwatch(self, job_id: str, watch: _Watch) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(watch)
            if not waiters:
                del self._waiters[job_id]

    async def _wait_watched(
        self, job_id: str, watch: _Watch, deadline: float, job: Job | None
    ) -> Job:
        """Wait for a watched job until ``deadline`` (loop time); ``job`` is its state as
        the caller already knows it (``None``: read it first)."""
        loop = asyncio.get_running_loop()
        while True:
            if job is None:
                watch.event.clear()
                job = await self.get(job_id)
                if job is None:
                    raise JobNotFound(f"job {job_id} not found (unknown or expired)")
            remaining = deadline - loop.time()
            if job.status.terminal or remaining <= 0:
                return job
            await ChangeSignal.wait(watch.event, min(remaining, _RECHECK_S))
            # The notification carries the finished job when it is small: no read back.
            # Unless it is older than what this waiter has seen (a late message about an
            # earlier end of a job since requeued): then read it back.
            carried, watch.job = watch.job, None
            job = carried if carried is not None and carried.updated_at >= job.updated_at else None

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.done():
            return
        if self._listener_lock is None:
            self._listener_lock = asyncio.Lock()
        async with self._listener_lock:  # many concurrent waits: subscribe once
            if self._listener is None or self._listener.done():
                await self._subscribe()

    async def _subscribe(self) -> None:
        pubsub = await self._open_pubsub()
        if pubsub is None:
            return  # waiters fall back to the 1 s re-check
        self._listener = asyncio.create_task(self._listen(pubsub), name="tenfold-redis-done")

    async def _open_pubsub(self) -> Any:
        """A pub/sub connection subscribed to ``P:done``; ``None`` if Redis is unavailable."""
        if self._closed:
            return None
        pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
        try:
            await self._call(pubsub.subscribe(f"{self.prefix}:done"))
        except QueueUnavailable:
            await _drop_pubsub(pubsub)
            return None
        self._pubsub = pubsub
        return pubsub

    async def _listen(self, pubsub: Any) -> None:
        """Hand "done" notifications to waiters. A lost connection is logged and dropped
        (closed, never back into the pool as it is); while anyone waits, the listener
        resubscribes with backoff and then wakes every waiter to read its job again (a
        notification sent meanwhile is lost). With nobody waiting, it ends: the next
        ``wait`` subscribes."""
        loop = asyncio.get_running_loop()
        delay = _RESUBSCRIBE_FIRST_S
        try:
            while True:
                subscribed = loop.time()
                try:
                    await self._deliver(pubsub)
                    return  # closed
                except Exception as exc:
                    if self._closed:
                        return
                    log.warning(
                        "redis queue %s: done notifications lost (%s: %s); resubscribing",
                        self,
                        type(exc).__name__,
                        exc,
                    )
                await _drop_pubsub(pubsub)
                await self._drop_idle_connections()  # they lost theirs too
                pubsub = None
                if loop.time() - subscribed < _RESUBSCRIBE_MAX_S:
                    # Lost again soon after subscribing: back off rather than spin.
                    await asyncio.sleep(delay)
                    delay = min(_RESUBSCRIBE_MAX_S, delay * 2)
                else:
                    delay = _RESUBSCRIBE_FIRST_S
                pubsub = await self._resubscribe()
                if pubsub is None:
                    return
                self._wake_all()
        finally:
            if pubsub is not None:
                await _drop_pubsub(pubsub)

    async def _deliver(self, pubsub: Any) -> None:
        while not self._closed:
            # No timeout: each timed read would set up (and cancel) a timer per message.
            message = await pubsub.get_message(timeout=None)
            if message is None or message.get("type") != "message":
                continue
            job_id, _, fields = str(message["data"]).partition(" ")
            watches = self._waiters.get(job_id)
            if not watches:
                continue  # another process's job: not even parsed
            job = _notified_job(fields)
            for watch in watches:
                watch.job = job
                watch.event.set()

    async def _resubscribe(self) -> Any:
        """Subscribe again, backing off while Redis is unavailable, for as long as anyone
        waits; ``None`` once nobody does (or the queue is closed)."""
        delay = _RESUBSCRIBE_FIRST_S
        while self._waiters and not self._closed:
            pubsub = await self._open_pubsub()
            if pubsub is not None:
                log.info("redis queue %s: done notifications resubscribed", self)
                return pubsub
            await asyncio.sleep(delay)
            delay = min(_RESUBSCRIBE_MAX_S, delay * 2)
        return None

    def _wake_all(self) -> None:
        """Every waiter reads its job again (nothing carried)."""
        for watches in self._waiters.values():
            for watch in watches:
                watch.job = None
                watch.event.set()

    async def depth(self, model: str) -> int:
        client = self._redis()
        return int(await self._call(client.zcard(self._key("queued", model))))

    async def stats(self, model: str) -> QueueStats:
        client = self._redis()
        now = self._now()
        window = self.config.stats_window_s

        async def read() -> list[Any]:
            running = self._key("running", model)
            async with client.pipeline(transaction=False) as pipe:
                pipe.zcard(self._key("queued", model))
                # A lease that ran out is not leased (its worker is gone): it is claimable,
                # queued since it expired.
                pipe.zcount(running, f"({_f(now)}", "+inf")
                pipe.zcount(running, "-inf", _f(now))
                pipe.zcard(self._key("dead", model))
                pipe.zrange(self._key("queued", model), 0, 0, withscores=True)
                pipe.zrange(running, 0, 0, withscores=True)
                pipe.hgetall(self._key("waits", model))
                return list(await pipe.execute())

        queued, live, expired, dead, oldest, first_expiry, waits = await self._call(read())
        since = [float(oldest[0][1])] if oldest else []
        if first_expiry and float(first_expiry[0][1]) <= now:
            since.append(float(first_expiry[0][1]))
        n, total = 0, 0.0
        for field, value in waits.items():  # CLAIM drops the seconds that left the window
            second, _, kind = field.partition(":")
            if float(second) < now - window:
                continue
            if kind == "n":
                n += int(value)
            else:
                total += float(value)
        return QueueStats(
            model=model,
            queued=int(queued) + int(expired),
            leased=int(live),
            dead=int(dead),
            oldest_queued_age_s=max(0.0, now - min(since)) if since else 0.0,
            avg_wait_s=(total / n) if n else None,
            window_s=window,
        )

    async def models(self) -> list[str]:
        client = self._redis()
        return sorted(await self._call(client.smembers(f"{self.prefix}:models")))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._enqueues.close(finish_in_flight=True)  # answer what was written
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None
