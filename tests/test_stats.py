"""ModelStats: the windowed figures /v1/stats shows."""

from __future__ import annotations

import pytest

from tenfold.runtime.stats import ModelStats


def test_the_throughput_window_stays_bounded_when_nobody_reads_the_stats() -> None:
    stats = ModelStats(throughput_window_s=60.0)
    for i in range(10_000):  # one batch a second for ~2.8 hours, never polled
        stats.record_batch(float(i), [(4, 0.01)], [0.0] * 4)
    assert len(stats._done) <= 61
    assert stats.items_total == 40_000
    assert stats.throughput(9_999.0) == pytest.approx(4.0, rel=0.05)  # ~4 items a second


def test_throughput_counts_only_the_window() -> None:
    stats = ModelStats(throughput_window_s=10.0)
    stats.record_batch(0.0, [(100, 0.1)], [])
    stats.record_batch(20.0, [(5, 0.1)], [])
    stats.record_batch(25.0, [(5, 0.1)], [])
    assert stats.throughput(25.0) == 2.0  # 10 items over 5 s
    assert stats.throughput(100.0) == 0.0
