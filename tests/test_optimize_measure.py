from __future__ import annotations

import itertools

import pytest

from tenfold.optimize.measure import batches, measure_throughput


def test_batches_cycle_through_inputs() -> None:
    assert batches([1, 2, 3], 2, 0) == [1, 2]
    assert batches([1, 2, 3], 2, 1) == [3, 1]
    assert batches([1, 2, 3], 4, 0) == [1, 2, 3, 1]


def test_speedup_follows_cost_per_item_on_a_fake_timer() -> None:
    # The timer advances by each function's cost per item: the ratio is exact.
    now = [0.0]

    def timer() -> float:
        return now[0]

    def costing(seconds_per_item: float):  # type: ignore[no-untyped-def]
        def predict(batch: list[int]) -> list[int]:
            now[0] += seconds_per_item * len(batch)
            return batch

        return predict

    result = measure_throughput(
        {"base": costing(0.01), "fast": costing(0.0025), "slow": costing(0.02)},
        "base",
        list(range(10)),
        4,
        slice_s=1.0,
        rounds=3,
        timer=timer,
    )
    assert result["base"].speedup == 1.0
    assert result["fast"].speedup == pytest.approx(4.0)
    assert result["slow"].speedup == pytest.approx(0.5)
    assert result["base"].items_per_s == pytest.approx(100.0)
    assert result["fast"].items > result["base"].items > result["slow"].items


def test_every_function_runs_at_least_one_batch_per_round() -> None:
    calls = itertools.count()

    def predict(batch: list[int]) -> list[int]:
        next(calls)
        return batch

    clock = itertools.count(step=10)  # every reading is 10 s later: one batch per slice
    result = measure_throughput(
        {"a": predict}, "a", [1], 1, slice_s=1.0, rounds=2, timer=lambda: float(next(clock))
    )
    assert result["a"].items == 2
    assert next(calls) == 3  # one warm-up + one per round


def test_unknown_baseline_is_an_error() -> None:
    with pytest.raises(ValueError, match="baseline"):
        measure_throughput({"a": list}, "b", [1], 1, slice_s=0.01)
