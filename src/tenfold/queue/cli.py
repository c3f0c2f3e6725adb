"""``tenfold worker`` and ``tenfold jobs``: run queue workers, submit and inspect jobs.

::

    python -m tenfold.queue.cli worker classify --queue sqlite:///data/queue.db
    python -m tenfold.queue.cli jobs submit classify --input '{"sepal_length": 5.1, ...}'
    python -m tenfold.queue.cli jobs status JOB_ID
    python -m tenfold.queue.cli jobs cancel JOB_ID
    python -m tenfold.queue.cli jobs requeue-dead classify

The queue URL comes from ``--queue`` or ``TENFOLD_QUEUE_URL``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from tenfold.errors import TenfoldError
from tenfold.queue.backend import QueueBackend
from tenfold.queue.url import from_url

T = TypeVar("T")

app = typer.Typer(
    rich_markup_mode=None, help="Durable job queue: workers and jobs.", no_args_is_help=True
)
jobs_app = typer.Typer(
    rich_markup_mode=None, help="Submit, inspect, cancel and requeue jobs.", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")

QUEUE_OPTION = typer.Option(..., "--queue", envvar="TENFOLD_QUEUE_URL", help="Queue URL")


@app.command("worker")
def worker_command(
    target: str = typer.Argument(..., help="MODULE:CLASS, or an example: embed, classify"),
    queue: str = QUEUE_OPTION,
    max_batch_size: int | None = typer.Option(None, help="Jobs per batch (model default)"),
    batch_timeout_ms: float | None = typer.Option(
        None, help="A partial batch waits this long once, then tops up (model default)"
    ),
    lease_ms: float = typer.Option(30_000.0, help="Lease per claim; renewed by heartbeats"),
    idle_wait_ms: float = typer.Option(1_000.0, help="How long one claim waits for work"),
    grace_s: float = typer.Option(30.0, help="On SIGTERM: time to finish the batch"),
    burst: bool = typer.Option(False, help="Exit once the queue is empty"),
    options: str = typer.Option("{}", help="Model options as a JSON object"),
    queue_name: str | None = typer.Option(None, help="Queue to serve (default: model name)"),
    metrics_port: int | None = typer.Option(
        None, help="Serve Prometheus metrics (tenfold_queue_wait_seconds) on this port"
    ),
    log_level: str = typer.Option("INFO", help="Logging level"),
) -> None:
    """Serve one model's queue until SIGTERM (exit 0 after the in-flight batch)."""
    from tenfold.queue.worker import run_worker

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    stats = run_worker(
        target,
        queue,
        max_batch_size=max_batch_size,
        batch_timeout_ms=batch_timeout_ms,
        lease_ms=lease_ms,
        idle_wait_ms=idle_wait_ms,
        grace_s=grace_s,
        burst=burst,
        model_options=json.loads(options),
        queue_name=queue_name,
        metrics_port=metrics_port,
    )
    if stats.abandoned or threading.active_count() > 1:
        # A predict call outlived the grace period; its thread cannot be interrupted, and
        # its jobs were failed as WorkerStopped (the attempt counts, they retry), so leave
        # now instead of joining it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _run(queue_url: str, fn: Callable[[QueueBackend], Awaitable[T]]) -> T:
    async def main() -> T:
        queue = from_url(queue_url)
        try:
            return await fn(queue)
        finally:
            await queue.close()

    try:
        return asyncio.run(main())
    except TenfoldError as exc:
        typer.echo(json.dumps({"error": exc.to_dict()}), err=True)
        raise typer.Exit(1) from exc


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


@jobs_app.command("submit")
def submit(
    model: str = typer.Argument(..., help="Model (queue) name"),
    input: str = typer.Option(..., "--input", help="The input as JSON"),
    queue: str = QUEUE_OPTION,
    idempotency_key: str | None = typer.Option(None, help="Same key -> same job"),
    wait_s: float = typer.Option(0.0, "--wait", help="Wait up to this long for the result"),
) -> None:
    """Enqueue one job and print it (with its result when --wait is given)."""
    payload = json.loads(input)

    async def go(q: QueueBackend) -> dict[str, Any]:
        job = await q.enqueue(model, payload, idempotency_key=idempotency_key)
        if wait_s > 0:
            job = await q.wait(job.id, wait_s)
        return job.to_dict()

    _echo(_run(queue, go))


@jobs_app.command("status")
def status(job_id: str, queue: str = QUEUE_OPTION) -> None:
    """Print a job: status, attempts, timestamps, result or error."""

    async def go(q: QueueBackend) -> dict[str, Any] | None:
        job = await q.get(job_id)
        return job.to_dict() if job else None

    found = _run(queue, go)
    if found is None:
        typer.echo(json.dumps({"error": {"type": "job_not_found", "id": job_id}}), err=True)
        raise typer.Exit(1)
    _echo(found)


@jobs_app.command("cancel")
def cancel(job_id: str, queue: str = QUEUE_OPTION) -> None:
    """Cancel a queued job (a running job cannot be cancelled)."""
    if not _run(queue, lambda q: q.cancel(job_id)):
        typer.echo(json.dumps({"cancelled": False, "id": job_id}), err=True)
        raise typer.Exit(1)
    _echo({"cancelled": True, "id": job_id})


@jobs_app.command("requeue-dead")
def requeue_dead(model: str, queue: str = QUEUE_OPTION) -> None:
    """Move every dead letter of MODEL back to the queue (attempts reset)."""
    _echo({"requeued": _run(queue, lambda q: q.requeue_dead(model)), "model": model})


@jobs_app.command("stats")
def stats(queue: str = QUEUE_OPTION) -> None:
    """Queue statistics per model."""

    async def go(q: QueueBackend) -> list[dict[str, Any]]:
        return [(await q.stats(m)).to_dict() for m in await q.models()]

    _echo(_run(queue, go))


if __name__ == "__main__":
    app()
