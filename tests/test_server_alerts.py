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


def test_serve_evaluates_the_configured_alerts(tmp_path: Path) -> None:
    """``tenfold serve --queue URL --config tenfold.toml``: the in-process alerts are the
    config's ``[autoscale.alerts]`` (the rules the Kubernetes export also writes), not the
    seed alerts."""
    from tenfold.config import ModelSettings, ServerSettings
    from tenfold.server.app import create_app

    config = tmp_path / "tenfold.toml"
    config.write_text(
        "[[autoscale.alerts]]\n"
        'name = "any_backlog"\nseverity = "warning"\nmetric = "depth"\n'
        'comparison = ">"\nthreshold = 0\nfor_s = 0\nsummary = "queued"\n'
    )
    settings = ServerSettings(
        models=(ModelSettings(target="classify", workers=1),),
        queue_url=f"sqlite:///{tmp_path / 'q.db'}",
        local_workers=False,
        predict_via_queue=True,
        cache_url=None,
        autoscale_config=str(config),
    )
    watch = create_app(settings).state.server.watch
    assert [r.name for r in watch.engine.rules] == ["any_backlog"]


async def test_a_configured_alert_fires(tmp_path: Path) -> None:
    from tenfold.autoscale.alerts import AlertRule, Severity
    from tenfold.autoscale.observation import Comparison, Metric

    rule = AlertRule("any_backlog", Severity.WARNING, Metric.DEPTH, Comparison.GT, 0, 0, "q")
    clock = FakeClock(start=1_000_000.0)
    queue = from_url(f"sqlite:///{tmp_path / 'q.db'}", clock=clock)
    watch = QueueWatch(
        queue, ["embed"], workers=0, registry=CollectorRegistry(), clock=clock, rules=(rule,)
    )
    try:
        assert not (await watch.tick()).firing
        await queue.enqueue("embed", "x")
        assert [e.rule.name for e in (await watch.tick()).firing] == ["any_backlog"]
    finally:
        await queue.close()
