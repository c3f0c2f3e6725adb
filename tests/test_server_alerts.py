"""Queue alerts inside serve: the stalled alert fires with no worker and resolves."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from tenfold.clock import FakeClock
from tenfold.queue import from_url
from tenfold.server.alerts import QueueWatch


async def test_stalled_alert_fires_when_nobody_takes_jobs_and_resolves(tmp_path: Path) -> None:
    clock = FakeClock(start=1_000_000.0)  # one fake clock for the queue and the watch
    queue = from_url(f"sqlite:///{tmp_path / 'q.db'}", clock=clock)
    registry = CollectorRegistry()
    watch = QueueWatch(queue, ["embed"], workers=0, registry=registry, clock=clock)
    try:
        job = await queue.enqueue("embed", "nobody will run me")
        assert not (await watch.tick()).firing
        clock.advance(119)
        assert not (await watch.tick()).firing
        clock.advance(2)  # the oldest queued job is now 121 s old
        names = [e.rule.name for e in (await watch.tick()).firing]
        assert names == ["queue_stalled"]
        assert [a["alert"] for a in watch.store.snapshot()["active"]] == ["queue_stalled"]
        text = generate_latest(registry).decode()
        assert "tenfold_queue_depth 1.0" in text
        assert "tenfold_queue_oldest_age_seconds 121.0" in text
        # a worker takes the job: the alert resolves on the next tick
        (claim,) = await queue.claim("embed", 1, wait_ms=0, lease_ms=10_000, worker_id="w")
        assert claim.job.id == job.id
        assert not (await watch.tick()).firing
        assert watch.store.snapshot()["active"] == []
        assert watch.store.snapshot()["recent"]
    finally:
        await queue.close()
