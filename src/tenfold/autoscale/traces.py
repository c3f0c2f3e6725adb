"""Traffic traces: a CSV with columns ``t_s,qps``, piecewise constant.

Each row sets the arrival rate from ``t_s`` until the next row; the last row marks
the end of the trace (its ``qps`` is not used). The first row must be at ``t_s = 0``.
Example traces ship in ``tenfold/data/traces/``: ``steady``, ``daily_cycle``,
``spike_10x``.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class TraceError(ValueError):
    """The trace file is malformed (the message gives the line)."""


@dataclass(frozen=True, slots=True)
class Trace:
    times_s: tuple[float, ...]
    qps: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.times_s) < 2 or len(self.times_s) != len(self.qps):
            raise TraceError("a trace needs at least two rows (the last one marks the end)")
        bad_t = [t for t in self.times_s if not math.isfinite(t)]
        if bad_t:
            raise TraceError(f"t_s must be finite, got {bad_t[0]!r}")
        if self.times_s[0] != 0:
            raise TraceError("the first row must be at t_s = 0")
        if any(b <= a for a, b in zip(self.times_s, self.times_s[1:], strict=False)):
            raise TraceError("t_s must strictly increase")
        bad_q = [q for q in self.qps if not (math.isfinite(q) and q >= 0)]
        if bad_q:
            raise TraceError(f"qps must be finite and >= 0, got {bad_q[0]!r}")

    @property
    def duration_s(self) -> float:
        return self.times_s[-1]

    @property
    def peak_qps(self) -> float:
        return max(self.qps[:-1])

    def scaled_to(self, peak_qps: float) -> Trace:
        """The same shape with every rate scaled so the peak is ``peak_qps``."""
        factor = peak_qps / self.peak_qps
        return Trace(self.times_s, tuple(q * factor for q in self.qps))

    def rate_at(self, t_s: float) -> float:
        i = bisect.bisect_right(self.times_s, t_s) - 1
        return self.qps[max(0, min(i, len(self.qps) - 2))]

    def cumulative(self, t_s: float) -> float:
        """Expected arrivals in ``[0, t_s)``: the integral of the piecewise-constant rate."""
        total = 0.0
        for i in range(len(self.times_s) - 1):
            start, end = self.times_s[i], self.times_s[i + 1]
            if t_s <= start:
                break
            total += self.qps[i] * (min(t_s, end) - start)
        return total


def load_trace(path: str | Path) -> Trace:
    times: list[float] = []
    rates: list[float] = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["t_s", "qps"]:
            raise TraceError(f"{path}: the header must be 't_s,qps', got {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row or row[0].startswith("#"):
                continue
            try:
                t, q = (float(x) for x in row)
            except ValueError as exc:
                raise TraceError(f"{path}:{lineno}: expected two numbers, got {row}") from exc
            if not math.isfinite(t):
                raise TraceError(f"{path}:{lineno}: t_s must be finite, got {row[0]!r}")
            if not (math.isfinite(q) and q >= 0):
                raise TraceError(f"{path}:{lineno}: qps must be finite and >= 0, got {row[1]!r}")
            times.append(t)
            rates.append(q)
    try:
        return Trace(tuple(times), tuple(rates))
    except TraceError as exc:
        raise TraceError(f"{path}: {exc}") from exc


def example_trace_path(name: str) -> Path:
    """Path of a bundled trace: ``steady``, ``daily_cycle`` or ``spike_10x``."""
    ref = resources.files("tenfold") / "data" / "traces" / f"{name}.csv"
    path = Path(str(ref))
    if not path.is_file():
        raise FileNotFoundError(f"no bundled trace {name!r}")
    return path
