"""The profiler: run a model in a worker process and measure its batch curve.

The model runs in a separate process (``multiprocessing`` spawn, like a serving
worker) so its threads, CUDA context and memory are its own and the parent can show
progress. For each batch size: one warm-up call, then calls for ``seconds`` (and at
least ``min_batches``) on batches cut from calibration inputs; the point records batch
latency p50/p99, items/s while busy, and utilization: NVML's GPU utilization when the
model runs on an NVIDIA GPU and ``pynvml`` is installed, else time in predict / wall time.

    profile = run_profile("classify", batch_sizes=[1, 8, 64], seconds=0.5,
                          on_event=print)

Calibration inputs: ``embed`` -> ``tenfold.examples.sentences.sentences(n, seed)``;
``classify`` -> rows of scikit-learn's iris; any model -> ``inputs_path`` (JSON lines,
one input per line, validated against the model's ``input_model``).
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import multiprocessing
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tenfold.planner.profile import Profile, ProfilePoint

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


class ProfilerError(RuntimeError):
    """The model could not be loaded or run, or the worker process died."""


class EventKind(enum.StrEnum):
    LOADING = "loading"
    LOADED = "loaded"
    PROGRESS = "progress"
    POINT = "point"


@dataclass(frozen=True, slots=True)
class ProfileEvent:
    """Progress of a sweep: ``fraction`` is the share of the current batch size done."""

    kind: EventKind
    batch_size: int = 0
    fraction: float = 0.0
    point: ProfilePoint | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class ProfileSpec:
    target: str
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    seconds: float = 2.0
    inputs_path: str | None = None
    seed: int = 0
    min_batches: int = 5
    warmup_batches: int = 1
    #: CPU threads for the model's math libraries (torch, OpenMP, MKL); ``None`` leaves
    #: their defaults. One thread per worker avoids oversubscribing a shared CPU.
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be >= 1, got {list(self.batch_sizes)}")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ValueError(f"batch sizes must be distinct, got {list(self.batch_sizes)}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        if self.min_batches < 1 or self.warmup_batches < 0:
            raise ValueError("min_batches must be >= 1 and warmup_batches >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``, sorted; clear errors for anything else."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"batch sizes must be comma-separated integers, got {text!r}") from exc
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"batch sizes must be integers >= 1, got {text!r}")
    return tuple(sorted(set(sizes)))


# --- pure summaries ---


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(
    batch_size: int,
    latencies_s: Sequence[float],
    wall_s: float,
    *,
    gpu_utilization: float | None = None,
    memory_bytes: int | None = None,
) -> ProfilePoint:
    """A profile point from the batch latencies measured over ``wall_s`` seconds.

    ``items_per_s`` is throughput while busy (items / time in predict): what one replica
    carries at 100% utilization. ``busy_fraction`` is the GPU's own utilization when
    given, else time in predict / wall time.
    """
    if not latencies_s:
        raise ValueError("no batches were measured")
    busy_s = sum(latencies_s)
    busy = gpu_utilization if gpu_utilization is not None else min(1.0, busy_s / wall_s)
    return ProfilePoint(
        batch_size=batch_size,
        latency_p50_ms=percentile(latencies_s, 50) * 1000.0,
        latency_p99_ms=percentile(latencies_s, 99) * 1000.0,
        items_per_s=batch_size * len(latencies_s) / busy_s,
        busy_fraction=round(busy, 4),
        memory_bytes=memory_bytes,
    )


# --- the parent side ---


def run_profile(
    target: str,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    seconds: float = 2.0,
    inputs_path: str | Path | None = None,
    seed: int = 0,
    min_batches: int = 5,
    threads: int | None = None,
    on_event: Callable[[ProfileEvent], None] | None = None,
) -> Profile:
    """Profile ``target`` (``MODULE:CLASS``, ``embed`` or ``classify``) in a worker process."""
    spec = ProfileSpec(
        target=target,
        batch_sizes=tuple(sorted(batch_sizes)),
        seconds=seconds,
        inputs_path=str(inputs_path) if inputs_path is not None else None,
        seed=seed,
        min_batches=min_batches,
        threads=threads,
    )
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=worker_main, args=(spec, send), name="tenfold-profiler")
    proc.start()
    send.close()  # the child holds the only writer: EOF here means it died
    try:
        while True:
            if not recv.poll(0.2):
                if not proc.is_alive() and not recv.poll(0):
                    raise ProfilerError(f"profiler worker exited with code {proc.exitcode}")
                continue
            try:
                kind, payload = recv.recv()
            except EOFError:
                proc.join(5)
                raise ProfilerError(
                    f"profiler worker exited with code {proc.exitcode} before finishing"
                ) from None
            if kind == "error":
                raise ProfilerError(str(payload))
            if kind == "done":
                return Profile.from_dict(payload)
            if on_event is not None:
                on_event(_event(kind, payload))
    finally:
        recv.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def _event(kind: str, payload: dict[str, Any]) -> ProfileEvent:
    point = payload.get("point")
    return ProfileEvent(
        kind=EventKind(kind),
        batch_size=int(payload.get("batch_size", 0)),
        fraction=float(payload.get("fraction", 0.0)),
        point=ProfilePoint(**point) if point else None,
        message=str(payload.get("message", "")),
    )


# --- the worker side (runs in the spawned process) ---


def worker_main(spec: ProfileSpec, conn: Connection) -> None:
    """Entry point of the worker process: sends events, then ``("done", profile dict)``."""
    try:
        profile = _profile_in_worker(spec, lambda kind, payload: conn.send((kind, payload)))
        conn.send(("done", profile.to_dict()))
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if not isinstance(exc, ValueError | ProfilerError):
            detail += "\n" + traceback.format_exc()
        conn.send(("error", detail))
    finally:
        conn.close()


def _profile_in_worker(spec: ProfileSpec, emit: Callable[[str, dict[str, Any]], None]) -> Profile:
    from pydantic import TypeAdapter

    from tenfold.model import load_model_class

    # A user's `mymodels:Model` usually lives in the directory tenfold was started from.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if spec.threads is not None:
        # Before the model imports its math libraries, which read these once.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(spec.threads)
    emit("loading", {"message": f"loading {spec.target}"})
    cls = load_model_class(spec.target)
    raw = calibration_inputs(
        cls.name, max(256, 4 * max(spec.batch_sizes)), spec.seed, spec.inputs_path
    )
    adapter = TypeAdapter(cls.input_model) if cls.input_model is not None else None
    items = [adapter.validate_python(r) for r in raw] if adapter is not None else raw
    model = cls()
    model.load()
    torch = sys.modules.get("torch")
    if spec.threads is not None and torch is not None:
        torch.set_num_threads(spec.threads)
    device, cuda = _describe_device()
    if cuda is None and spec.threads is not None:
        device += f", {spec.threads} thread{'s' if spec.threads > 1 else ''}"
    weights = _torch_weights_bytes(model)
    if weights is None and cuda is not None:
        weights = int(cuda.memory_allocated())
    emit("loaded", {"message": f"{cls.name} on {device}"})

    nvml = _NvmlSampler.open(cuda)
    points = []
    offset = 0
    for b in spec.batch_sizes:

        def batch(start: int, size: int = b) -> list[Any]:
            return [items[(start + i) % len(items)] for i in range(size)]

        for _ in range(spec.warmup_batches):
            _check_outputs(model.predict(batch(offset)), b)
        _reset_peak_memory(cuda)
        if nvml is not None:
            nvml.start()
        latencies: list[float] = []
        began = last_emit = time.perf_counter()
        while True:
            chunk = batch(offset)
            offset += b
            t0 = time.perf_counter()
            out = model.predict(chunk)
            if cuda is not None:
                cuda.synchronize()
            t1 = time.perf_counter()
            latencies.append(t1 - t0)
            _check_outputs(out, b)
            elapsed = t1 - began
            if elapsed >= spec.seconds and len(latencies) >= spec.min_batches:
                break
            if t1 - last_emit >= 0.1:
                emit("progress", {"batch_size": b, "fraction": min(1.0, elapsed / spec.seconds)})
                last_emit = t1
        wall = time.perf_counter() - began
        point = summarize(
            b,
            latencies,
            wall,
            gpu_utilization=nvml.stop() if nvml is not None else None,
            memory_bytes=_peak_memory_bytes(cuda),
        )
        points.append(point)
        emit("point", {"batch_size": b, "fraction": 1.0, "point": point.to_dict()})
    if nvml is not None:
        nvml.close()
    return Profile(
        model=cls.name,
        version=str(model.version),
        device=device,
        points=tuple(points),
        weights_bytes=weights,
        utilization_source="nvml" if nvml is not None else "busy_time",
    )


def _check_outputs(out: Any, expected: int) -> None:
    if len(out) != expected:
        raise ProfilerError(f"predict returned {len(out)} outputs for a batch of {expected}")


def calibration_inputs(model_name: str, n: int, seed: int, inputs_path: str | None) -> list[Any]:
    """Raw (JSON-like) inputs to profile with; they cycle when fewer than a batch."""
    if inputs_path is not None:
        return _read_jsonl(Path(inputs_path))
    if model_name == "embed":
        from tenfold.examples.sentences import sentences

        return list(sentences(n, seed))
    if model_name == "classify":
        from sklearn.datasets import load_iris

        data = load_iris()
        keys = ("sepal_length", "sepal_width", "petal_length", "petal_width")
        return [dict(zip(keys, map(float, row), strict=True)) for row in data.data]
    raise ValueError(
        f"model {model_name!r} has no built-in calibration inputs: pass --inputs FILE.jsonl "
        "(one JSON input per line)"
    )


def _read_jsonl(path: Path) -> list[Any]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read inputs {path}: {exc.strerror or exc}") from exc
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{no}: not valid JSON: {exc.msg}") from exc
    if not out:
        raise ValueError(f"{path}: no inputs (expected one JSON value per line)")
    return out


def _describe_device() -> tuple[str, Any]:
    """The device the model runs on, and ``torch.cuda`` when that is a CUDA GPU."""
    torch = sys.modules.get("torch")  # only if the model itself imported torch
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return str(torch.cuda.get_device_name(torch.cuda.current_device())), torch.cuda
    return f"cpu: {_cpu_name()} ({os.cpu_count()} logical cores)", None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _torch_weights_bytes(model: Any) -> int | None:
    """Bytes of parameters and buffers of the torch modules the model holds, if any."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    total, seen = 0, False
    for value in vars(model).values():
        if isinstance(value, torch.nn.Module):
            seen = True
            for t in list(value.parameters()) + list(value.buffers()):
                total += t.numel() * t.element_size()
    return total if seen else None


def _reset_peak_memory(cuda: Any) -> None:
    if cuda is not None:
        cuda.reset_peak_memory_stats()
        return
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) of this process.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_bytes(cuda: Any) -> int | None:
    if cuda is not None:
        return int(cuda.max_memory_allocated())
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class _NvmlSampler:
    """Samples NVML GPU utilization in a thread while one batch size runs."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, cuda: Any) -> _NvmlSampler | None:
        if cuda is None:
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
            # NVML numbers devices physically; CUDA_VISIBLE_DEVICES may renumber them.
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
            index = cuda.current_device()
            if visible and visible.split(",")[index].strip().isdigit():
                index = int(visible.split(",")[index])
            return cls(pynvml, pynvml.nvmlDeviceGetHandleByIndex(index))
        except Exception:  # no pynvml, no driver access: fall back to busy time
            return None

    def start(self) -> None:
        self._samples = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            self._samples.append(rates.gpu / 100.0)

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return sum(self._samples) / len(self._samples) if self._samples else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()
