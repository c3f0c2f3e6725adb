"""What the machine can run natively, and whether a half-precision variant can help here.

fp16 and bf16 only pay off where the hardware computes in them natively; emulated,
bf16 measured 0.18x torch fp32 at batch 32 on an AVX2 CPU. So the decision is a pure
function of a :class:`Hardware` description, which :func:`detect` reads once.
"""

from __future__ import annotations

from dataclasses import dataclass

# CPU flags (as /proc/cpuinfo spells them) that give native arithmetic in each dtype.
# f16c only converts fp16 <-> fp32, it does not compute in fp16, so it is not listed.
CPU_NATIVE_FLAGS: dict[str, frozenset[str]] = {
    "float16": frozenset({"avx512_fp16", "amx_fp16"}),
    "bfloat16": frozenset({"avx512_bf16", "amx_bf16"}),
}
# CUDA compute capability from which tensor cores compute in each dtype (Volta, Ampere).
CUDA_MIN_CAPABILITY: dict[str, tuple[int, int]] = {
    "float16": (7, 0),
    "bfloat16": (8, 0),
}


@dataclass(frozen=True, slots=True)
class Hardware:
    cpu_flags: frozenset[str]
    #: ``(major, minor)`` of CUDA device 0, or ``None`` without a usable GPU.
    cuda_capability: tuple[int, int] | None = None
    cuda_name: str = ""

    @property
    def device(self) -> str:
        return "cuda" if self.cuda_capability is not None else "cpu"

    def describe(self) -> str:
        if self.cuda_capability is not None:
            major, minor = self.cuda_capability
            return f"CUDA {self.cuda_name} (capability {major}.{minor})"
        isa = [f for f in ("avx512f", "avx2", "avx512_bf16", "amx_bf16") if f in self.cpu_flags]
        return "CPU (" + (", ".join(isa) or "no AVX2") + ")"


def half_precision_skip_reason(hw: Hardware, dtype: str) -> str | None:
    """``None`` when ``dtype`` ("float16"/"bfloat16") runs natively on ``hw``, else why not."""
    if hw.cuda_capability is not None:
        need = CUDA_MIN_CAPABILITY[dtype]
        if hw.cuda_capability >= need:
            return None
        have = ".".join(map(str, hw.cuda_capability))
        return (
            f"{dtype} needs CUDA capability >= {need[0]}.{need[1]} for native math; "
            f"{hw.cuda_name or 'this GPU'} has {have}"
        )
    if hw.cpu_flags & CPU_NATIVE_FLAGS[dtype]:
        return None
    flags = " or ".join(sorted(CPU_NATIVE_FLAGS[dtype]))
    return f"no native {dtype} on this CPU (needs {flags}); emulated it is slower than fp32"


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """Flags of the first processor in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def detect() -> Hardware:
    """Read the CPU flags and CUDA device 0 (needs torch for CUDA; CPU-only without it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = parse_cpu_flags(f.read())
    except OSError:  # not Linux: assume no native half precision on the CPU
        flags = frozenset()
    try:
        import torch
    except ImportError:
        return Hardware(cpu_flags=flags)
    if not torch.cuda.is_available():
        return Hardware(cpu_flags=flags)
    major, minor = torch.cuda.get_device_capability(0)
    return Hardware(
        cpu_flags=flags, cuda_capability=(major, minor), cuda_name=torch.cuda.get_device_name(0)
    )
