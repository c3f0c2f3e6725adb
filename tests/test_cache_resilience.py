"""A cache outage is a miss, never an error: a real redis-server, killed, frozen, restarted."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_support import RedisServer
from tenfold.cache import (
    LayerStats,
    Outcome,
    ResilientBackend,
    ResilientConfig,
    ResultCache,
    from_url,
)
from tenfold.clock import FakeClock

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.kill()


async def test_killed_redis_serves_misses_then_caching_resumes(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    stats = LayerStats("result")
    backend = ResilientBackend(
        from_url(server.url + "?timeout_ms=200"),
        stats=stats,
        config=ResilientConfig(op_timeout_s=1.0, retry_after_s=5.0),
        clock=clock,
    )
    cache = ResultCache(backend)
    calls: list[str] = []

    async def ask(text: str) -> Outcome:
        async def compute() -> dict[str, str]:
            calls.append(text)
            return {"echo": text}

        res = await cache.get_or_compute(model="m", version="1", input=text, compute=compute)
        assert res.value == {"echo": text}
        return res.outcome

    assert [await ask("a"), await ask("a")] == [Outcome.MISS, Outcome.HIT]
    assert calls == ["a"]

    server.kill()
    caplog.set_level(logging.INFO, logger="tenfold.cache.resilient")
    outcomes = []
    for i in range(3):
        if i:
            clock.advance(6.0)  # past retry_after_s: this call probes the dead server again
        outcomes.append(await ask("b"))
    assert outcomes == [Outcome.MISS] * 3
    assert calls == ["a", "b", "b", "b"]  # served every time, nothing cached
    assert not backend.healthy
    # Each probe is one failed get; its set follows at the same instant and is skipped.
    assert stats.errors == 3
    assert backend.skipped == 3
    assert backend.incidents == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unavailable" in warnings[0].getMessage()

    # Within retry_after_s of a failure the dead backend is not even tried.
    await ask("c")
    assert stats.errors == 3
    assert backend.skipped == 5  # the get and the set of "c"

    server.start()
    clock.advance(6.0)
    assert [await ask("d"), await ask("d")] == [Outcome.MISS, Outcome.HIT]
    assert backend.healthy
    assert calls == ["a", "b", "b", "b", "c", "d"]
    assert any("is back" in r.getMessage() for r in caplog.records)
    assert backend.incidents == 1
    await backend.close()


async def test_frozen_redis_costs_one_bounded_wait(server: RedisServer) -> None:
    clock = FakeClock()
    backend = ResilientBackend(
        from_url(server.url + "?timeout_ms=100"),
        config=ResilientConfig(op_timeout_s=0.3, retry_after_s=5.0),
        clock=clock,
    )
    await backend.set_many({"k": b"v"}, ttl_s=60)
    assert await backend.get_many(["k"]) == [b"v"]
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)  # a hung server: connected but silent
    try:
        started = time.perf_counter()
        assert await backend.get_many(["k", "x"]) == [None, None]
        assert time.perf_counter() - started < 1.0
        assert backend.stats.errors == 1
        skipped = backend.skipped
        started = time.perf_counter()
        for _ in range(50):
            assert await backend.get_many(["k"]) == [None]
        # Skipped while the incident is open: no more timeouts paid (each would cost 0.1 s,
        # 5 s in all; the bound leaves room for a busy machine, the counts are exact).
        assert time.perf_counter() - started < 0.5
        assert backend.skipped - skipped == 50 and backend.stats.errors == 1
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    clock.advance(6.0)
    assert await backend.get_many(["k"]) == [b"v"]
    assert backend.healthy
    await backend.close()
