"""Does the model fit the GPU at the chosen batch? Vertical vs horizontal advice.

Need = weights + activations per item x batch size, against the GPU's memory less a
reserve (CUDA context, allocator fragmentation). When it does not fit, recommend a
bigger GPU from the catalog (vertical: no new communication) or tensor parallelism
over N GPUs (horizontal: each holds 1/N of the weights, at the price of an all-reduce
per layer), and say why.

    advice = memory_advice(weights_bytes=14e9, activation_bytes_per_item=50e6,
                           batch_size=32, gpu=catalog.get("a10g"), catalog=catalog)
    advice.fits, advice.message
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tenfold.planner.catalog import Catalog, Gpu
from tenfold.planner.profile import Profile

GIB = 1024**3
#: Share of a GPU's memory a model may plan to use; the rest is CUDA context and slack.
USABLE_FRACTION = 0.9


@dataclass(frozen=True, slots=True)
class MemoryAdvice:
    fits: bool
    weights_gib: float
    activations_gib: float
    needed_gib: float
    usable_gib: float
    max_batch_that_fits: int | None
    """Largest batch whose activations fit beside the weights; ``None`` if weights alone do not."""
    bigger_gpus: tuple[str, ...]
    """Catalog keys that hold the need on one GPU, cheapest first."""
    tensor_parallel_degree: int | None
    """GPUs of the chosen kind that hold the need when sharded, if it does not fit on one."""
    message: str


def activation_bytes_per_item(profile: Profile) -> float | None:
    """Slope of measured memory against batch size (least squares), or ``None``.

    The intercept (weights plus framework overhead) cancels out of the slope, so process
    RSS measured on a CPU still gives a usable per-item figure.
    """
    pts = [(p.batch_size, p.memory_bytes) for p in profile.points if p.memory_bytes is not None]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx = sum(b for b, _ in pts) / n
    my = sum(m for _, m in pts) / n
    sxx = sum((b - mx) ** 2 for b, _ in pts)
    if sxx == 0:
        return None
    slope = sum((b - mx) * (m - my) for b, m in pts) / sxx
    return max(0.0, slope)


def memory_advice(
    *,
    weights_bytes: float,
    activation_bytes_per_item: float,
    batch_size: int,
    gpu: Gpu,
    catalog: Catalog,
    usable_fraction: float = USABLE_FRACTION,
) -> MemoryAdvice:
    if weights_bytes < 0 or activation_bytes_per_item < 0 or batch_size < 1:
        raise ValueError("weights and activations must be >= 0 and batch_size >= 1")
    weights = weights_bytes / GIB
    per_item = activation_bytes_per_item / GIB
    acts = per_item * batch_size
    need = weights + acts
    usable = gpu.memory_gib * usable_fraction
    if per_item > 0:
        max_b: int | None = math.floor((usable - weights) / per_item) if weights < usable else None
    else:
        max_b = None if weights >= usable else batch_size
    bigger = tuple(
        g.key
        for g in sorted(catalog.gpus, key=lambda g: g.price_per_hour_usd)
        if g.key != gpu.key and g.memory_gib * usable_fraction >= need and g.key != "cpu"
    )
    what = (
        f"weights {weights:.2f} GiB + activations {acts:.2f} GiB at batch {batch_size} "
        f"= {need:.2f} GiB"
    )
    if need <= usable:
        return MemoryAdvice(
            fits=True,
            weights_gib=weights,
            activations_gib=acts,
            needed_gib=need,
            usable_gib=usable,
            max_batch_that_fits=max_b,
            bigger_gpus=(),
            tensor_parallel_degree=None,
            message=f"fits on one {gpu.key}: {what} of {usable:.1f} GiB usable",
        )
    tp = math.ceil(need / usable)
    options = []
    if bigger:
        options.append(
            f"a bigger GPU ({', '.join(bigger)}): one device, no cross-GPU traffic, "
            "the simpler choice when it exists"
        )
    options.append(
        f"tensor parallelism over {tp} x {gpu.key}: each GPU holds 1/{tp} of the weights and "
        "activations, at the cost of an all-reduce per layer (needs NVLink-class links)"
    )
    if weights >= usable:
        why = (
            f"the weights alone ({weights:.2f} GiB) exceed one {gpu.key}'s {usable:.1f} GiB usable"
        )
    elif not max_b:
        why = f"{what} exceeds one {gpu.key}'s {usable:.1f} GiB usable, even at batch 1"
    else:
        why = (
            f"{what} exceeds one {gpu.key}'s {usable:.1f} GiB usable; a batch of at most "
            f"{max_b} would fit, at lower throughput"
        )
    return MemoryAdvice(
        fits=False,
        weights_gib=weights,
        activations_gib=acts,
        needed_gib=need,
        usable_gib=usable,
        max_batch_that_fits=max_b,
        bigger_gpus=bigger,
        tensor_parallel_degree=tp,
        message=f"does not fit: {why}. Use " + "; or ".join(options) + ".",
    )
