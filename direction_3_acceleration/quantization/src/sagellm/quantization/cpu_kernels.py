"""The fused C++ CPU passes of W8A8 (``csrc/int8_rows.cpp``), compiled on first use.

Why C++: around the int8 matmul, quantizing the activations and scaling the
int32 result back take ~10 small PyTorch ops per linear layer; at decode
sizes ([64, 576] rows) their dispatch overhead costs as much as the matmul
saves. The two fused passes do it in one read each.

The extension is built by :func:`sagellm.core.native.build_extension`
(``torch.utils.cpp_extension``: a C++ compiler and ``ninja``) once per
process and cached per machine under ``$TORCH_EXTENSIONS_DIR``, with
explicit ISA flags for the level this CPU runs (AVX-512 where it has it,
never ``-march=native``) and core's ``<sagellm/avx512.h>`` on the include
path. Where it cannot be built, :func:`kernels` returns None and the callers
use the plain PyTorch path, which computes the same numbers.
``SAGELLM_CPU_KERNELS=0`` turns the extension off; ``SAGELLM_CPU_ISA=portable``
builds its portable path on any CPU.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from sagellm.core.native import DISABLE_ENV, ExtensionSpec, load_extension

SOURCE = Path(__file__).with_name("csrc") / "int8_rows.cpp"
SPEC = ExtensionSpec(
    name="quantization_int8_rows",
    sources=(SOURCE,),
    what="sageLLM's fused int8 CPU kernels",
    fallback="W8A8 layers use plain PyTorch ops (same results, slower at small batches)",
)

__all__ = ["DISABLE_ENV", "SOURCE", "SPEC", "kernels"]


@functools.cache
def kernels() -> Any | None:
    """The compiled module (``quantize_rows``, ``scale_rows_cols``), or None where it is unavailable."""
    return load_extension(SPEC)
