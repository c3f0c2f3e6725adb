"""Durable-queue jobs into the in-process batcher: the queue plugs into the same seam.

A :class:`JobPump` claims batches of one model's jobs from the durable queue
(SQLite by default, Redis across machines) and hands their inputs to the
model's :class:`~tenfold.runtime.scheduler.Scheduler`, exactly where HTTP
requests enter. Jobs and synchronous requests therefore share batches and
workers, and the model is loaded once. Leases are renewed while a batch runs;
a completion is fenced by its lease token; a failed item is retried with
backoff or dead-lettered by the queue alone, its batch-mates complete.
If this process dies, the leases expire and another server or a
``tenfold worker`` picks the jobs up (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from tenfold.errors import InvalidInput, NotReady, Overloaded, TenfoldError
from tenfold.queue.backend import QueueBackend
from tenfold.queue.job import Claim, JobError
from tenfold.queue.jsonsafe import to_jsonable
from tenfold.runtime.service import ModelService

log = logging.getLogger("tenfold.jobs")


class JobPump:
    def __init__(
        self,
        queue: QueueBackend,
        service: ModelService,
        *,
        lease_ms: float = 60_000.0,
        wait_ms: float = 500.0,
    ) -> None:
        self.queue = queue
        self.service = service
        self.lease_ms = lease_ms
        self.wait_ms = wait_ms
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{service.name}"
        # At most one claimed batch per worker process, plus one being claimed.
        self._slots = asyncio.Semaphore(service.settings.workers + 1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not (self.service.ready and self.service.serving):
                # Not while every worker reloads either: a claimed job's lease would be
                # renewed here while no worker can run it, and no other host could take it.
                await asyncio.sleep(0.1)
                continue
            await self._slots.acquire()
            try:
                claims = await self.queue.claim(
                    self.service.name,
                    self.service.config.max_batch_size,
                    wait_ms=self.wait_ms,
                    lease_ms=self.lease_ms,
                    worker_id=self.worker_id,
                )
            except TenfoldError as exc:  # queue store unavailable: back off, keep going
                self._slots.release()
                log.warning("claiming jobs of %s failed: %s", self.service.name, exc)
                await asyncio.sleep(1.0)
                continue
            if not claims:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(claims))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("job batch failed: %s", task.exception())

    async def drain(self) -> None:
        """Release (not fail) the jobs still in hand, for another worker to take."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _heartbeat(self, claims: list[Claim]) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000.0)
            for c in claims:
                await self.queue.heartbeat(c.job.id, c.token, self.lease_ms)

    async def _run(self, claims: list[Claim]) -> None:
        heart = asyncio.create_task(self._heartbeat(claims))
        try:
            valid: list[tuple[Claim, Any]] = []
            for c in claims:
                try:
                    (item,) = self.service.validate([c.job.input], "input")
                except InvalidInput as exc:  # not retryable: it will never validate
                    await self.queue.fail(
                        c.job.id, c.token, JobError("InvalidInput", exc.message), retryable=False
                    )
                    continue
                valid.append((c, item))
            if not valid:
                return
            try:
                outcomes = await self.service.predict([item for _, item in valid], None)
            except (Overloaded, NotReady):
                # The batcher is full, or the model is not ready (a load failing, shutting
                # down): give the jobs back now; an expired lease would burn an attempt.
                for c, _ in valid:
                    await self.queue.release(c.job.id, c.token)
                return
            except asyncio.CancelledError:
                for c, _ in valid:
                    await self.queue.release(c.job.id, c.token)
                raise
            done: list[tuple[str, str, Any]] = []
            for (c, _), out in zip(valid, outcomes, strict=True):
                if isinstance(out, NotReady):  # never computed (shutdown, load failing)
                    await self.queue.release(c.job.id, c.token)
                    continue
                if isinstance(out, TenfoldError):
                    error_type = (out.details or {}).get("error_type", out.type)
                    await self.queue.fail(c.job.id, c.token, JobError(error_type, out.message))
                    continue
                try:
                    done.append((c.job.id, c.token, to_jsonable(out)))
                except (TypeError, ValueError) as exc:
                    await self.queue.fail(
                        c.job.id, c.token, JobError("OutputNotJSON", str(exc)), retryable=False
                    )
            if done:
                await self.queue.complete_many(done)
        finally:
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart
