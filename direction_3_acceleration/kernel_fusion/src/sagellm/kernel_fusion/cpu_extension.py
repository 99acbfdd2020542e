"""Compile this package's C++ CPU kernels on first use, through sagellm-core's native build helper.

Each ``csrc/<source_name>.cpp`` is one extension, built by
:func:`sagellm.core.native.build_extension`: once per process and cached per
machine under ``$TORCH_EXTENSIONS_DIR``, with explicit ISA flags for the
level this CPU runs (AVX-512 where ``/proc/cpuinfo`` has it, the portable
C++ loops elsewhere; never ``-march=native``, so a shared cache cannot
crash another CPU), ``-fopenmp`` for ``at::parallel_for``, and core's
``<sagellm/avx512.h>`` on the include path. Where no compiler or ``ninja``
is available :func:`load_kernels` returns None (with one warning) and
callers run the PyTorch reference. ``SAGELLM_CPU_KERNELS=0`` turns it off;
``SAGELLM_CPU_ISA=portable`` builds the portable path on any CPU.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from sagellm.core.native import DISABLE_ENV, ExtensionSpec, load_extension

CSRC = Path(__file__).with_name("csrc")
FUSED_DTYPES = (torch.float32, torch.bfloat16)  # what every compiled kernel dispatches on

__all__ = ["CSRC", "DISABLE_ENV", "FUSED_DTYPES", "kernel_spec", "load_kernels"]


def kernel_spec(source_name: str) -> ExtensionSpec:
    """The build of ``csrc/<source_name>.cpp`` (``csrc/`` on the include path for ``block_scales.h``)."""
    return ExtensionSpec(
        name=f"kernel_fusion_{source_name}",
        sources=(CSRC / f"{source_name}.cpp",),
        what=f"sageLLM's fused CPU kernel {source_name}",
        fallback="using the PyTorch reference instead (same results, slower)",
        include_dirs=(CSRC,),
    )


@functools.cache
def load_kernels(source_name: str) -> Any | None:
    """The compiled module of ``csrc/<source_name>.cpp``, or None where it cannot be built."""
    return load_extension(kernel_spec(source_name))
