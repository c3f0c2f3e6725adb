"""Small real models for the API tests (imported by worker processes too)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import StringConstraints

from tenfold import Model


class Upper(Model[str, str]):
    """Upper-cases text. Special inputs: ``boom`` raises, ``crash`` kills the process,
    ``sleep:S`` sleeps S seconds. Every computed item is appended to ``log_path``."""

    name = "upper"
    version = "1"
    input_model: ClassVar[Any] = Annotated[str, StringConstraints(min_length=1)]

    def load(self) -> None:
        gate = self.options.get("wait_for_file")
        while gate and not Path(gate).exists():
            time.sleep(0.02)
        self.log = Path(self.options["log_path"]) if "log_path" in self.options else None

    def predict(self, batch: list[str]) -> list[str]:
        if self.log:
            with self.log.open("a") as fh:
                fh.write("\n".join(batch) + "\n")
        for s in batch:
            if s == "crash":
                os._exit(3)
            if s.startswith("sleep:"):
                time.sleep(float(s.split(":")[1]))
        if "boom" in batch:
            raise ValueError("cannot upper-case 'boom'")
        return [s.upper() for s in batch]

    def item_size(self, item: str) -> int:
        return len(item)


class Sleepy(Model[int, int]):
    """Takes 20 ms per item plus 10 ms per batch: a known batch-latency curve."""

    name = "sleepy"
    version = "1"
    input_model: ClassVar[Any] = int

    def predict(self, batch: list[int]) -> list[int]:
        time.sleep(0.010 + 0.020 * len(batch))
        return [x + 1 for x in batch]


class Vec(Model[str, list[float]]):
    """A toy embedder: [len, count of 'a', 1.0]. Logs every computed item to ``log_path``."""

    name = "vec"
    version = "1"
    embeds = True
    input_model: ClassVar[Any] = Annotated[str, StringConstraints(min_length=1)]

    def load(self) -> None:
        self.log = Path(self.options["log_path"])

    def predict(self, batch: list[str]) -> list[list[float]]:
        with self.log.open("a") as fh:
            fh.write("\n".join(batch) + "\n")
        if "boom" in batch:
            raise ValueError("cannot embed 'boom'")
        return [[float(len(s)), float(s.count("a")), 1.0] for s in batch]


class Fragile(Model[str, Any]):
    """For the worker-pool tests. ``load`` fails while the file ``fail_load_if`` exists.
    Inputs: ``crash`` kills the process, ``sleep:S`` sleeps S seconds, ``lambda`` returns an
    output that cannot be pickled, ``badpickle`` one that cannot be unpickled; others are
    upper-cased."""

    name = "fragile"
    version = "1"

    def load(self) -> None:
        flag = self.options.get("fail_load_if")
        if flag and Path(flag).exists():
            raise RuntimeError("cannot load (the flag file exists)")

    def predict(self, batch: list[str]) -> list[Any]:
        out: list[Any] = []
        for s in batch:
            if s == "crash":
                os._exit(3)
            if s.startswith("sleep:"):
                time.sleep(float(s.split(":")[1]))
            if s == "lambda":
                out.append(lambda: 1)
            elif s == "badpickle":
                out.append(_RefusesUnpickle("a", "b"))
            else:
                out.append(s.upper())
        return out


class _RefusesUnpickle(Exception):
    """Pickles fine, but unpickling calls ``__init__(message)`` with one argument: TypeError."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(a)
