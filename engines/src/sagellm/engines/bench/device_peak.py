"""Peak FLOP/s of the device a run used: the denominator of MFU.

Nothing is measured: the numbers are vendor figures, so MFU is comparable
between runs on the same hardware and only roughly between machines.

CPUs -- FLOPs per cycle per core by instruction set, at an assumed 2.5 GHz
(turbo and AVX-512 down-clocking move real peaks by +-30 %), times the
cores torch computes on (``torch.get_num_threads()``):

    ISA (flag)          float32   bfloat16                    source
    avx2                32        32 (no native bf16)         2 FMA ports x 8 lanes x 2
    avx512f             64        64                          2 FMA ports x 16 lanes x 2
    avx512_bf16         64        128                         VDPBF16PS: 2 x 16 lanes x 2 pairs x 2
    amx_bf16            64        1024                        Intel AMX TMUL (Sapphire Rapids)

AMD Zen 4 runs AVX-512 on 256-bit units, so its real peak is about half
the avx512 rows.

GPUs -- dense tensor-core TFLOP/s (no sparsity), SXM parts:

    GPU     bf16/fp16   float32
    H100    989         67    (PCIe: 756 / 51)
    H200    989         67
    A100    312         19.5
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CPU_GHZ = 2.5
CPU_FLOPS_PER_CYCLE: dict[str, dict[str, float]] = {  # flag -> dtype -> FLOPs/cycle/core
    "amx_bf16": {"float32": 64, "bfloat16": 1024, "float16": 64},
    "avx512_bf16": {"float32": 64, "bfloat16": 128, "float16": 64},
    "avx512f": {"float32": 64, "bfloat16": 64, "float16": 64},
    "avx2": {"float32": 32, "bfloat16": 32, "float16": 32},
}
GPU_TFLOPS: dict[str, dict[str, float]] = {  # name fragment -> dtype -> TFLOP/s; most specific first
    "H100 PCIe": {"bfloat16": 756, "float16": 756, "float32": 51},
    "H100": {"bfloat16": 989, "float16": 989, "float32": 67},
    "H200": {"bfloat16": 989, "float16": 989, "float32": 67},
    "A100": {"bfloat16": 312, "float16": 312, "float32": 19.5},
}


@dataclass(frozen=True, slots=True)
class DevicePeak:
    flops_per_s: float
    source: str  # how the number was chosen, for the report


def cpu_peak(flags: Iterable[str], dtype: str, cores: int) -> DevicePeak | None:
    """The best ISA row ``flags`` support (table order is best first)."""
    present = set(flags)
    for isa, per_dtype in CPU_FLOPS_PER_CYCLE.items():
        if isa in present and dtype in per_dtype:
            per_core = per_dtype[dtype] * CPU_GHZ * 1e9
            return DevicePeak(
                per_core * cores, f"cpu {isa}, {dtype}: {per_core / 1e9:.0f} GFLOP/s/core x {cores} cores (table)"
            )
    return None


def gpu_peak(name: str, dtype: str) -> DevicePeak | None:
    for fragment, per_dtype in GPU_TFLOPS.items():
        if fragment.lower() in name.lower() and dtype in per_dtype:
            return DevicePeak(per_dtype[dtype] * 1e12, f"{fragment} {dtype}: {per_dtype[dtype]:g} TFLOP/s (table)")
    return None


def given_peak(tflops: float) -> DevicePeak:
    return DevicePeak(tflops * 1e12, f"--peak-tflops {tflops:g}")


def detect_peak(device: str, dtype: str | None, cpu_flags: Iterable[str], cores: int) -> DevicePeak | None:
    """The table's peak for a target's device string ("cpu", "cuda:0 (NVIDIA H100 ...)"); None for "remote"."""
    if dtype is None:
        return None
    if device == "cpu":
        return cpu_peak(cpu_flags, dtype, cores)
    if device.startswith("cuda"):
        return gpu_peak(device, dtype)
    return None
