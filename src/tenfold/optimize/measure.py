"""Throughput of several predict functions, measured interleaved in one run.

On a shared machine the load changes from second to second, so measuring one
variant after another would credit one with another's quiet moment. Instead each
round times every function for the same wall-clock slice, and a variant's speedup
is the median over rounds of its rate divided by the baseline's rate in that round.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tenfold.optimize.variants import Predict


@dataclass(frozen=True, slots=True)
class Throughput:
    items_per_s: float
    #: Median over rounds of (this rate / baseline rate in the same round).
    speedup: float
    items: int


def batches(inputs: Sequence[Any], batch_size: int, index: int) -> list[Any]:
    """The ``index``-th batch of ``batch_size`` items, cycling through ``inputs``."""
    n = len(inputs)
    start = (index * batch_size) % n
    return [inputs[(start + j) % n] for j in range(batch_size)]


def measure_throughput(
    predicts: Mapping[str, Predict],
    baseline: str,
    inputs: Sequence[Any],
    batch_size: int,
    *,
    slice_s: float,
    rounds: int = 3,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, Throughput]:
    """Items/s of each function at ``batch_size`` and its speedup over ``baseline``.

    Each round gives every function ``slice_s`` seconds (at least one batch, after one
    untimed warm-up batch at this size).
    """
    if baseline not in predicts:
        raise ValueError(f"baseline {baseline!r} is not among the measured functions")
    if batch_size < 1 or rounds < 1 or not inputs:
        raise ValueError("batch_size and rounds must be >= 1 and inputs non-empty")
    for predict in predicts.values():
        predict(batches(inputs, batch_size, 0))
    rates: dict[str, list[float]] = {name: [] for name in predicts}
    items: dict[str, int] = dict.fromkeys(predicts, 0)
    seconds: dict[str, float] = dict.fromkeys(predicts, 0.0)
    for _ in range(rounds):
        for name, predict in predicts.items():
            done, start = 0, timer()
            while True:
                predict(batches(inputs, batch_size, done))
                done += 1
                elapsed = timer() - start
                if elapsed >= slice_s:
                    break
            rates[name].append(done * batch_size / elapsed)
            items[name] += done * batch_size
            seconds[name] += elapsed
    out: dict[str, Throughput] = {}
    for name in predicts:
        ratios = [r / b for r, b in zip(rates[name], rates[baseline], strict=True)]
        out[name] = Throughput(
            items_per_s=items[name] / seconds[name],
            speedup=statistics.median(ratios),
            items=items[name],
        )
    return out
