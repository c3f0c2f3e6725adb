from __future__ import annotations

import pytest

from tenfold.optimize.hardware import Hardware, half_precision_skip_reason, parse_cpu_flags

AVX2 = frozenset({"avx", "avx2", "f16c", "fma"})
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16"}
COOPER_LAKE = AVX2 | {"avx512f", "avx512_bf16"}


@pytest.mark.parametrize(
    ("hw", "dtype", "native"),
    [
        (Hardware(AVX2), "float16", False),  # f16c converts, it does not compute
        (Hardware(AVX2), "bfloat16", False),
        (Hardware(COOPER_LAKE), "bfloat16", True),
        (Hardware(COOPER_LAKE), "float16", False),
        (Hardware(SAPPHIRE_RAPIDS), "float16", True),
        (Hardware(SAPPHIRE_RAPIDS), "bfloat16", True),
        (Hardware(AVX2, (6, 1), "GTX 1080"), "float16", False),
        (Hardware(AVX2, (7, 5), "T4"), "float16", True),
        (Hardware(AVX2, (7, 5), "T4"), "bfloat16", False),
        (Hardware(AVX2, (8, 0), "A100"), "bfloat16", True),
        (Hardware(AVX2, (9, 0), "H100"), "float16", True),
    ],
)
def test_half_precision_only_where_native(hw: Hardware, dtype: str, native: bool) -> None:
    reason = half_precision_skip_reason(hw, dtype)
    assert (reason is None) == native
    if reason is not None:
        assert dtype in reason


def test_gpu_reason_names_the_capability() -> None:
    reason = half_precision_skip_reason(Hardware(AVX2, (7, 5), "T4"), "bfloat16")
    assert reason is not None and "8.0" in reason and "7.5" in reason and "T4" in reason


def test_parse_cpu_flags_reads_first_processor() -> None:
    text = "processor\t: 0\nflags\t\t: fpu avx2 f16c\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    assert parse_cpu_flags(text) == frozenset({"fpu", "avx2", "f16c"})
    assert parse_cpu_flags("nothing here") == frozenset()


def test_describe_and_device() -> None:
    assert Hardware(AVX2).device == "cpu"
    assert "avx2" in Hardware(AVX2).describe()
    gpu = Hardware(AVX2, (9, 0), "H200")
    assert gpu.device == "cuda" and "H200" in gpu.describe()
