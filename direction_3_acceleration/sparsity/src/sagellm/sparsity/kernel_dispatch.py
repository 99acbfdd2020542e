"""Which kernel runs a pruned weight: the packed 2:4 kernels for decode-sized inputs, else a dense matmul.

The packed kernels (``sagellm.sparsity.packed24``) read half the weight
bytes, which pays where a matmul is memory-bound: a few rows (decode). From
``MAX_PACKED_ROWS`` rows up the dense oneDNN/cuBLAS matmul on the pruned
weight wins, so both forms are kept. ``kernel=auto`` picks the int8 packed
kernel for 2:4 weights where it is built; any packed kind that cannot run
here (no compiler, a weight off the CPU: the packed kernels are CPU code)
falls back to the dense path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sagellm.sparsity.pattern import SparsityPattern
from sagellm.sparsity.sparse_weight import SparseWeight

MAX_PACKED_ROWS = 8
AUTO_KERNEL = "int8"


def packed_kind(kernel: str, pattern: SparsityPattern, device: torch.device | None = None) -> str | None:
    """The packed kernel to build for ``kernel``, ``pattern`` and a weight on ``device``; None for the dense path."""
    if pattern.name != "2:4" or kernel == "dense" or (device is not None and device.type != "cpu"):
        return None
    kind = AUTO_KERNEL if kernel == "auto" else kernel
    return kind if _available(kind) else None


def _available(kind: str) -> bool:
    try:
        from sagellm.sparsity.packed24 import packed24_available
    except ImportError:
        return False
    return bool(packed24_available(kind))


def pack(weight: torch.Tensor, pattern: SparsityPattern, kernel: str) -> SparseWeight:
    """The engine's form of a pruned ``weight``: dense, plus the packed operands where a kernel applies."""
    kind = packed_kind(kernel, pattern, weight.device)
    if kind is None:
        return SparseWeight(weight=weight, pattern=pattern.name)
    from sagellm.sparsity.packed24 import pack_24

    return SparseWeight(weight=weight, pattern=pattern.name, kernel=kind, packed=pack_24(weight, kind))


def sparse_linear(x: torch.Tensor, sweight: SparseWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` in ``x``'s dtype: packed kernel for at most ``MAX_PACKED_ROWS`` rows, else dense."""
    rows = x.numel() // max(1, x.shape[-1])
    if sweight.packed is not None and 0 < rows <= MAX_PACKED_ROWS:
        from sagellm.sparsity.packed24 import packed24_linear

        out: torch.Tensor = packed24_linear(x, sweight.packed, bias)
        return out
    weight = sweight.weight if sweight.weight.dtype == x.dtype else sweight.weight.to(x.dtype)
    return F.linear(x, weight, _as(bias, x))


def _as(bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if bias is None or bias.dtype == x.dtype:
        return bias
    return bias.to(x.dtype)
