"""``x @ W.T`` for a weight kept as GGML blocks: the packed kernel for few rows, a tiled dense matmul for many.

Decode multiplies a few rows by every weight and is bound by reading
weights, so few rows run ``csrc/ggml_matmul.cpp`` straight from the blocks.
Prefill is bound by arithmetic, where the dense GEMM wins; rather than keep
a dense copy (4-7x the packed bytes, the memory this module exists to save)
it dequantizes :data:`TILE_BYTES` of rows at a time into a transient buffer
and multiplies each tile densely::

    rows <= max_rows:  out[:, part] = kernel(x, blocks)              (no dense weight at all)
    rows >  max_rows:  for each tile of W: out[:, tile] = x @ dequant(tile).T

A fused projection (q/k/v, gate/up) is several parts, each of its own GGML
type (Q4_K_M files store v and down as Q6_K): each writes its columns.
The extension is compiled on first use (sagellm.core.native); where it cannot
be, :func:`packed_kernels` is None and the weight is made dense at load.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sagellm.core.native import ExtensionSpec, load_extension
from sagellm.engines.model.ggml_weights import GGMLWeight

CSRC = Path(__file__).with_name("csrc")
# Largest dense tile a many-row matmul dequantizes at once (float32 bytes). Small enough to stay in cache
# for the GEMM that reads it back: 1.5B ffn_gate, [M, 1536] x [8960, 1536]^T on one Zen 3 core, M = 64 / 256:
# dense 76 / 216 ms, 4 MB tiles 66 / 261 ms, 32 MB tiles 100 / 358 ms.
TILE_BYTES = 4 * 1024 * 1024
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.cache
def packed_kernels() -> Any | None:
    """The compiled ``csrc/ggml_matmul.cpp``, or None (one RuntimeWarning says why) where it cannot be built."""
    spec = ExtensionSpec(
        name="engines_ggml_matmul",
        sources=(CSRC / "ggml_matmul.cpp",),
        what="sageLLM's packed GGML matmul kernel",
        fallback="GGUF K-quant/Q5_0/Q8_0 weights are dequantized to dense tensors at load instead",
    )
    return load_extension(spec)


class GGMLMatmul:
    """The parts of one (possibly fused) weight, stacked along N, as torch views of their blocks."""

    def __init__(self, parts: Sequence[GGMLWeight], kernels: Any, int8_activations: bool = False) -> None:
        """``int8_activations``: :meth:`packed` quantizes x to int8 per 32, as llama.cpp does (faster, ~0.5 %
        relative error from x's rounding); else x stays float32 (the dense result to float rounding)."""
        if not parts or len({p.shape[1] for p in parts}) != 1:
            raise ValueError("a packed matmul needs one or more parts of one K")
        self.kernels = kernels
        self.int8_activations = int8_activations
        self.parts = [(torch.from_numpy(p.blocks), p.type_id, p.shape[0]) for p in parts]
        self.blocks = [blocks for blocks, _, _ in self.parts]
        self.types = [type_id for _, type_id, _ in self.parts]
        self.in_features = parts[0].shape[1]
        self.out_features = sum(p.shape[0] for p in parts)
        self.nbytes = sum(p.nbytes for p in parts)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles (``copy.deepcopy`` of a model) leave the extension module out: it is not state."""
        return {**self.__dict__, "kernels": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.kernels is None:
            self.kernels = packed_kernels()

    def packed(self, x: torch.Tensor) -> torch.Tensor:
        """float32 [M, N] from the packed kernel (x of any float dtype, converted once)."""
        out = torch.empty(x.shape[0], self.out_features, dtype=torch.float32)
        # every part, one call
        self.kernels.matmul_into(x.float().contiguous(), self.blocks, self.types, out, 0, False, self.int8_activations)
        return out

    def tiled(self, x: torch.Tensor) -> torch.Tensor:
        """[M, N] in x's dtype: each tile of rows dequantized into a reused scratch buffer and multiplied."""
        out = torch.empty(x.shape[0], self.out_features, dtype=x.dtype)
        tile_rows = max(1, TILE_BYTES // (self.in_features * x.element_size()))
        scratch = _scratch(x.dtype, min(tile_rows, max(rows for _, _, rows in self.parts)) * self.in_features)
        column = 0
        for blocks, type_id, rows in self.parts:
            for start in range(0, rows, tile_rows):
                stop = min(rows, start + tile_rows)
                tile = scratch[: (stop - start) * self.in_features].view(stop - start, self.in_features)
                self.kernels.dequantize_into(blocks[start:stop], type_id, tile)
                out[:, column + start : column + stop] = F.linear(x, tile)
            column += rows
        return out

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        """The whole [N, K] weight in ``dtype`` (a device other than CPU, or a path that needs it dense)."""
        empty = torch.empty(0, dtype=torch.long)
        return torch.cat([self.kernels.dequantize_rows(b, t, self.in_features, empty, dtype) for b, t, _ in self.parts])

    def rows(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``ids`` of the weight in ``dtype``: an embedding lookup without a dense table (one part only)."""
        if len(self.parts) != 1:
            raise ValueError("row lookup reads a single-part weight")
        blocks, type_id, _ = self.parts[0]
        flat = ids.reshape(-1).to(torch.long)
        looked_up: torch.Tensor = self.kernels.dequantize_rows(blocks, type_id, self.in_features, flat, dtype)
        return looked_up.view(*ids.shape, self.in_features)


_local = threading.local()


def _scratch(dtype: torch.dtype, numel: int) -> torch.Tensor:
    """A per-thread flat buffer of at least ``numel`` elements, kept between calls (at most TILE_BYTES each).

    A fresh 32 MB tensor per tile costs its page faults on every call (measured: they, not the
    dequantization, dominated the tiled path); one reused buffer is faulted in once.
    """
    buffers: dict[torch.dtype, torch.Tensor] = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(dtype)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[dtype] = torch.empty(numel, dtype=dtype)
    return buffer


def dequantize_parts(parts: Sequence[GGMLWeight], dtype: torch.dtype) -> torch.Tensor:
    """The dense [N, K] of stacked parts, through the kernel when it builds, else gguf's numpy dequantizer."""
    kernels = packed_kernels()
    if kernels is not None:
        return GGMLMatmul(parts, kernels).dense(dtype)
    return torch.cat([torch.from_numpy(p.dequantize()).to(dtype) for p in parts])
