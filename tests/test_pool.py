"""The worker pool with real worker processes (toy models from tests/toymodels.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tenfold.errors import WorkerCrashed
from tenfold.runtime.isolation import ItemFailure
from tenfold.runtime.pool import (
    LoadFailed,
    WorkerPool,
    _Worker,
    hang_timeout_for,
    restart_delay_s,
)


async def until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def started(pool: WorkerPool) -> AsyncIterator[WorkerPool]:
    try:
        # Inside the try: a start that fails (a load timeout) leaves spawned, non-daemon
        # worker processes, which would hang the interpreter's exit unless closed.
        await pool.start()
        yield pool
    finally:
        await pool.close()


def test_restart_delay_backs_off_exponentially_to_a_cap() -> None:
    delays = [restart_delay_s(n, base_s=0.5, cap_s=3.0) for n in range(6)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_hang_limit_is_the_request_timeout_plus_a_grace() -> None:
    assert hang_timeout_for(30_000) == 60.0
    assert WorkerPool("toymodels:Fragile").hang_timeout_s == 60.0
    with pytest.raises(ValueError):
        WorkerPool("toymodels:Fragile", hang_timeout_s=0)


async def test_an_output_that_cannot_be_pickled_fails_alone() -> None:
    async with started(WorkerPool("toymodels:Fragile")) as pool:
        pid = pool._workers[0].info["pid"]
        (outs,), timings = await pool.run([["a", "lambda", "b"]])
        assert outs[0] == "A" and outs[2] == "B"  # the batch-mates get their outputs
        assert isinstance(outs[1], ItemFailure)
        assert outs[1].error_type == "UnpicklableOutput"
        assert "cannot leave the worker" in outs[1].message
        assert timings == [(3, timings[0][1])]
        # An output that pickles but cannot be unpickled in the server travels inside its
        # sub-batch's payload: that sub-batch fails, with the cause.
        (outs,), _ = await pool.run([["a", "badpickle"]])
        for failure in outs:
            assert isinstance(failure, ItemFailure) and "cannot be read" in failure.message
        # Neither the worker nor the reader thread died: same process, no restart.
        assert (await pool.run([["c"]]))[0] == [["C"]]
        assert pool._workers[0].info["pid"] == pid and pool.restarts == 0


async def test_a_hung_worker_is_killed_and_replaced() -> None:
    # 2 s: the watchdog also times the replacement's "ok" batch below (a busy machine).
    async with started(WorkerPool("toymodels:Fragile", hang_timeout_s=2.0)) as pool:
        t0 = time.monotonic()
        with pytest.raises(WorkerCrashed, match="hung"):
            await pool.run([["sleep:3600"]])
        assert time.monotonic() - t0 < 10
        assert pool.ready and pool.restarts == 1
        await until(lambda: pool.idle_count() == 1)
        assert (await pool.run([["ok"]]))[0] == [["OK"]]


async def test_a_slow_batch_under_the_limit_is_left_alone() -> None:
    async with started(WorkerPool("toymodels:Fragile", hang_timeout_s=5.0)) as pool:
        assert (await pool.run([["sleep:0.3"]]))[0] == [["SLEEP:0.3"]]
        await asyncio.sleep(0.1)
        assert pool.restarts == 0 and pool._workers[0].watchdog is None


async def test_ready_and_serving_while_one_replacement_loads(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    upper = WorkerPool("toymodels:Upper", workers=2, options={"wait_for_file": str(gate)})
    async with started(upper) as pool:
        gate.unlink()  # a replacement will wait in load() until the gate is back
        with pytest.raises(WorkerCrashed):
            await pool.run([["crash"]])
        await until(lambda: pool.restarts == 1)
        assert pool.ready  # one worker loading does not make the model unready
        assert pool.idle_count() == 1
        assert (await pool.run([["ok"]]))[0] == [["OK"]]  # the healthy worker serves
        gate.touch()
        await until(lambda: pool.idle_count() == 2)
        assert pool.ready


async def test_the_event_loop_never_waits_for_a_dead_process() -> None:
    """A dead worker is reaped in its reader thread; ``_on_exit`` (on the loop) never
    calls ``join``, which would stall every request for up to its timeout."""
    joins: list[float | None] = []

    class Process:
        exitcode = 3

        def join(self, timeout: float | None = None) -> None:
            joins.append(timeout)

    loop = asyncio.get_running_loop()
    pool = WorkerPool("toymodels:Fragile")
    pool._loop = loop
    worker = _Worker(0, Process(), None, loop.create_future())  # type: ignore[arg-type]
    pool._on_exit(worker)  # died while loading, at start: start() reports it
    assert joins == []
    assert isinstance(worker.ready.exception(), LoadFailed)


@pytest.mark.parametrize("failure", ["load raises", "load times out"])
async def test_a_start_that_fails_leaves_no_worker_process(tmp_path: Path, failure: str) -> None:
    """Non-daemon worker processes left running would hang the interpreter's exit."""
    flag = tmp_path / "flag"
    flag.touch()
    if failure == "load raises":
        pool = WorkerPool("toymodels:Fragile", workers=2, options={"fail_load_if": str(flag)})
        expected: type[BaseException] = LoadFailed
    else:  # load() waits for a file that never comes
        pool = WorkerPool(
            "toymodels:Upper",
            workers=2,
            options={"wait_for_file": str(tmp_path / "never")},
            start_timeout_s=2.0,
        )
        expected = TimeoutError
    with pytest.raises(expected):
        await pool.start()
    processes = [w.process for w in pool._workers]
    assert len(processes) == 2
    await until(lambda: not any(p.is_alive() for p in processes), timeout_s=10.0)


async def test_a_replacement_that_never_loads_is_killed_and_reported(tmp_path: Path) -> None:
    """A replacement's load() that hangs gets the start timeout too: it is killed, counts
    as a failed load, and the pool stops saying ready (it was ready with no loaded worker)."""
    gate = tmp_path / "gate"
    gate.touch()
    pool = WorkerPool(
        "toymodels:Upper",
        workers=1,
        options={"wait_for_file": str(gate)},
        start_timeout_s=60.0,  # the first start: a spawn on a busy machine can take seconds
        max_load_failures=1,
        restart_backoff_s=30.0,
    )
    async with started(pool):
        pool._start_timeout_s = 1.0  # what the replacement gets (read when it is spawned)
        gate.unlink()  # from now on, load() waits forever
        with pytest.raises(WorkerCrashed):
            await pool.run([["crash"]])
        await until(lambda: pool.restarts == 1)
        assert pool.loaded_count() == 0
        await until(lambda: pool.error is not None, timeout_s=15.0)
        assert "did not load within 1 s" in (pool.error or "")
        assert not pool.ready
