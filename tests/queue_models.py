"""Tiny models for the queue tests: cheap to load, deterministic, with a poison input."""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import numpy as np

from tenfold.model import Model

POISON = 13


class Echo(Model[int, Any]):
    """``x -> numpy [x, 2x]``; raises on ``POISON``. Optionally logs executions and sleeps."""

    name = "echo"
    input_model: ClassVar[Any] = int
    max_batch_size = 16
    batch_timeout_ms = 5.0

    def load(self) -> None:
        self.sleep_s = float(os.environ.get("ECHO_SLEEP_S", "0"))
        self.log_path = os.environ.get("ECHO_EXEC_LOG")

    def predict(self, batch: list[int]) -> list[Any]:
        if POISON in batch:
            raise ValueError(f"cannot echo {POISON}")
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.log_path:
            # One small O_APPEND write per batch: atomic, even with several processes.
            with open(self.log_path, "a") as f:
                f.write("".join(f"{x}\n" for x in batch))
        return [np.array([x, 2 * x]) for x in batch]


class Slow(Model[float, float]):
    """Sleeps for the largest input (seconds) per batch, returns the inputs."""

    name = "slow"
    input_model: ClassVar[Any] = float
    max_batch_size = 4

    def predict(self, batch: list[float]) -> list[float]:
        time.sleep(max(batch))
        return batch
