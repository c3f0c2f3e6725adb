"""The worker process: load the model once, then run the batches it is sent.

Messages over a :mod:`multiprocessing` pipe between tenfold's own processes
(pickle is safe here: both ends are ours; durable queues carry JSON only)::

    parent -> worker   ("batch", batch_id, [[item, ...], ...])   sub-batches, run in order
                       ("stop",)
    worker -> parent   ("ready", {"pid": ..., "load_s": ...})
                       ("load_failed", "TypeError: ...")
                       ("result", batch_id, [(kind, payload, n), ...], [(n, seconds), ...])

An outcome is the model's output or an
:class:`~tenfold.runtime.isolation.ItemFailure`. A sub-batch's outcomes are
pickled together (:func:`encode_outcomes`, ``kind`` "batch"); only if that
fails are they pickled one by one ("items"), so an output that cannot be
pickled here (a lambda, a generator) fails that item alone. One that pickles
but cannot be unpickled in the server fails its sub-batch. A
Python exception never kills the worker (bisection isolates it); a hard crash
(segfault, ``os._exit``) closes the pipe, and the pool fails that batch and
starts a replacement.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from tenfold.model import load_model_class
from tenfold.runtime.isolation import ItemFailure, run_isolated

UNPICKLABLE = "UnpicklableOutput"


def encode_outcomes(outcomes: list[Any]) -> tuple[str, Any]:
    """A sub-batch's outcomes for the pipe: ``("batch", bytes)`` pickled together, or, only
    if that fails, ``("items", [bytes, ...])`` one by one so the item that cannot be pickled
    fails alone. Multiprocessing's ForkingPickler, as ``Connection.send`` uses: torch
    tensors travel through shared memory, not as copied bytes (plain per-item pickling made
    a 256x1024 tensor batch 30x slower), and an object shared by several outputs is
    stored once."""
    try:
        return "batch", bytes(ForkingPickler.dumps(outcomes, pickle.HIGHEST_PROTOCOL))
    except Exception:
        return "items", [_encode_item(o) for o in outcomes]


def decode_outcomes(kind: str, payload: Any, n: int) -> list[Any]:
    """The outcomes :func:`encode_outcomes` made. One that cannot be unpickled here fails
    alone when the worker sent items one by one; inside a whole-batch payload it fails its
    sub-batch (the items cannot be told apart), and the worker lives on either way."""
    if kind == "items":
        return [_decode_item(b) for b in payload]
    try:
        outcomes = pickle.loads(payload)
    except Exception as exc:
        failure = _unreadable(exc)
        return [failure] * n
    return list(outcomes)


def _encode_item(outcome: Any) -> bytes:
    """One item's outcome as bytes, or its failure if the output cannot be pickled."""
    try:
        return bytes(ForkingPickler.dumps(outcome, pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        failure = ItemFailure(
            UNPICKLABLE,
            f"the model returned a {type(outcome).__name__} that cannot leave the worker "
            f"process (pickle: {type(exc).__name__}: {exc})",
        )
        return pickle.dumps(failure, protocol=pickle.HIGHEST_PROTOCOL)


def _decode_item(blob: bytes) -> Any:
    """The outcome :func:`_encode_item` made, or that item's failure if it cannot be
    unpickled here (its class is missing in the server, or rejects its own pickle)."""
    try:
        return pickle.loads(blob)
    except Exception as exc:
        return _unreadable(exc)


def _unreadable(exc: Exception) -> ItemFailure:
    return ItemFailure(
        UNPICKLABLE,
        f"the model's output cannot be read in the server process "
        f"(unpickle: {type(exc).__name__}: {exc})",
    )


def _limit_threads(threads: int) -> None:
    """Give each worker its share of the cores. N workers each running a 2-thread
    OpenMP pool on 2 cores oversubscribe the CPU, and spinning OpenMP threads then
    slow every batch down many times over. An explicit OMP_NUM_THREADS wins."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def worker_main(
    conn: Connection, target: str, options: dict[str, Any], threads: int | None = None
) -> None:
    # Ctrl-C goes to the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        _limit_threads(threads)
    started = time.perf_counter()
    try:
        model = load_model_class(target)(**options)
        model.load()
    except BaseException as exc:  # report every load failure, then exit
        conn.send(("load_failed", f"{type(exc).__name__}: {exc}"))
        conn.close()
        return
    conn.send(("ready", {"pid": os.getpid(), "load_s": time.perf_counter() - started}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] == "stop":
            return
        _, batch_id, sub_batches = message
        outcomes: list[tuple[str, Any, int]] = []
        timings: list[tuple[int, float]] = []
        for items in sub_batches:
            t0 = time.perf_counter()
            results = run_isolated(model.predict, items)
            timings.append((len(items), time.perf_counter() - t0))
            outcomes.append((*encode_outcomes(results), len(results)))
        conn.send(("result", batch_id, outcomes, timings))
