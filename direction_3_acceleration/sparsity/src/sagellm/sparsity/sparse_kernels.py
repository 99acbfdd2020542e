"""The packed 2:4 C++ CPU kernels (``csrc/``), compiled on first use, and which of their paths runs here.

One build holds every path: the AVX2 and AVX-512 kernels carry their
instruction sets as per-function target attributes (VBMI, VNNI and BF16 are
in none of :mod:`sagellm.core.native`'s levels), so the extension is always
built at core's ``portable`` level and :func:`kernel_path` picks a path per
call from the CPU's flags: ``avx512`` (int8: avx512 VBMI + VNNI; bf16:
avx512_bf16), ``avx2`` (avx2 + fma) or ``scalar`` (portable C++). A path is
chosen only where both ``/proc/cpuinfo`` (core's level) and the compiler's
cpuid check agree, and the C++ side refuses a path the CPU lacks, so no
build can hit "Illegal instruction".

Environment, read per call: ``SAGELLM_CPU_KERNELS=0`` turns the kernels
off (:func:`kernel_path` is None and callers run the PyTorch reference);
``SAGELLM_CPU_ISA`` caps the path (``portable`` -> ``scalar``, ``avx2`` ->
at most ``avx2``).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

import torch

from sagellm.core.errors import NotSupportedError
from sagellm.core.native import DISABLE_ENV, ISA_ENV, PORTABLE, ExtensionSpec, choose_isa, cpu_flags, load_extension

CSRC = Path(__file__).with_name("csrc")
SOURCES = tuple(
    CSRC / name for name in ("bindings.cpp", "kernels_scalar.cpp", "kernels_avx2.cpp", "kernels_avx512.cpp")
)
SPEC = ExtensionSpec(
    name="sparsity_packed24",
    sources=SOURCES,
    what="sageLLM's packed 2:4 sparse CPU kernels",
    fallback="packed 2:4 layers run the PyTorch reference (unpack, then matmul: same results, slower)",
    include_dirs=(CSRC,),
)
PATHS = ("avx512", "avx2", "scalar")  # fastest first
# Paths each core ISA level (the SAGELLM_CPU_ISA cap) allows.
_ALLOWED = {"avx512": frozenset(PATHS), "avx2": frozenset({"avx2", "scalar"}), PORTABLE.name: frozenset({"scalar"})}
_OFF_VALUES = frozenset({"0", "false", "no", "off"})

__all__ = ["PATHS", "SPEC", "dense_int8_linear", "kernel_path", "kernels", "simd_path"]


@functools.cache
def kernels() -> Any | None:
    """The compiled module, or None where it cannot be built (one ``RuntimeWarning`` says why)."""
    return load_extension(SPEC, isa=PORTABLE.name)


def kernel_path(kind: str) -> str | None:
    """The fastest path that runs ``kind`` ("int8" or "bf16") here, or None: kernels off or not built."""
    return _kernel_path(kind, os.environ.get(ISA_ENV, "auto"), os.environ.get(DISABLE_ENV, "1"))


def simd_path(kind: str) -> bool:
    """Whether a vectorized path (AVX2 or AVX-512) runs ``kind`` here: the packed layout pays only then."""
    return kernel_path(kind) in ("avx512", "avx2")


@functools.cache
def _kernel_path(kind: str, isa_cap: str, switch: str) -> str | None:
    if switch.strip().lower() in _OFF_VALUES:
        return None
    level = choose_isa(cpu_flags(), platform.machine(), isa_cap)  # ConfigError for an unknown cap
    module = kernels()
    if module is None:
        return None
    runnable: list[str] = module.cpu_paths(kind)
    return next(path for path in runnable if path in _ALLOWED[level.name])


def dense_int8_linear(
    x: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor,
    row_sums: torch.Tensor,
    bias: torch.Tensor | None = None,
    path: str | None = None,
) -> torch.Tensor:
    """The dense baseline of the packed int8 kernel: same quantization, loop and rescale, a dense weight.

    ``x`` [M, K] float32/bf16/fp16, ``codes`` int8 [N, K], ``scales`` float32 [N], ``row_sums`` int32 [N]
    (sum of each row's codes). For benchmarks and tests; NotSupportedError where no kernel is built.
    """
    chosen = path or kernel_path("int8")
    module = kernels()
    if chosen is None or module is None:
        raise NotSupportedError("the packed 2:4 CPU kernels are not built here")
    bias32 = torch.empty(0) if bias is None else bias.detach().float().contiguous()
    out: torch.Tensor = module.dense_int8_linear(x.contiguous(), codes, scales, row_sums, bias32, chosen)
    return out
