"""GGUF weights kept as the file's own packed blocks (Q5_0, Q8_0, Q4_K, Q5_K, Q6_K).

A GGUF tensor of these types is ``N`` rows of ``K / QK`` blocks; every row is
the same number of bytes, so the tensor is a ``uint8 [N, row_bytes]`` array::

    row n:  | block 0 | block 1 | ... |      QK = 32 (Q5_0, Q8_0) or 256 (K-quants)
    Q8_0  (34 B / 32):  d fp16 | 32 int8
    Q4_K (144 B / 256): d fp16 | dmin fp16 | 12 B of 6-bit scales/mins | 128 B of nibbles
    Q6_K (210 B / 256): 128 B low nibbles | 64 B high bits | 16 int8 scales | d fp16

Kept this way a 1.5B Q4_K_M model holds ~1.1 GB instead of ~6 GB of float32,
and decode (bound by reading weights) reads 4.5-8.5 bits per weight through
``csrc/ggml_matmul.cpp``. Row operations (llama.cpp's q/k permutation, a
tensor-parallel row slice) move whole rows, so they work on the bytes as-is.
Q4_0/Q4_1 take torch's 4-bit kernel where it serves the model dtype (bf16/fp16,
``q4_weights.py``); in float32 (CPUs without bf16 instructions) they are kept
packed too: their dense float32 copy is 6.4x the file and the step reads it
all (SmolLM2-135M Q4_1 on 2 Zen 3 cores: 20 -> 35-38 tok/s at batch 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# ggml's type ids of the types the packed kernel reads.
PACKED_TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}
# Types a GGUF loader keeps packed; Q4_0/Q4_1 only where torch's 4-bit kernel does not serve the dtype.
KEPT_PACKED = frozenset({"Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"})
TORCH_INT4_TYPES = frozenset({"Q4_0", "Q4_1"})
TORCH_INT4_DTYPES = (torch.bfloat16, torch.float16)  # what torch's CPU 4-bit matmul multiplies


def kept_packed(type_name: str, dtype: torch.dtype) -> bool:
    """Whether a weight of this GGML type stays as blocks in a model of ``dtype``."""
    return type_name in KEPT_PACKED or (type_name in TORCH_INT4_TYPES and dtype not in TORCH_INT4_DTYPES)


@dataclass(frozen=True, slots=True)
class GGMLWeight:
    """One [N, K] weight as GGML blocks; ``dtype`` is the model dtype its dense form takes."""

    blocks: np.ndarray  # uint8 [N, row_bytes], C-contiguous, owned (not a view of the file)
    type_name: str  # "Q4_K", ...
    shape: tuple[int, int]  # (N, K)
    dtype: torch.dtype

    @property
    def type_id(self) -> int:
        return PACKED_TYPES[self.type_name]

    @property
    def nbytes(self) -> int:
        return int(self.blocks.nbytes)

    def map_rows(self, permute: Callable[[np.ndarray], np.ndarray]) -> GGMLWeight:
        """The same weight with rows reordered or sliced by ``permute`` (an array -> array function on axis 0)."""
        blocks = np.ascontiguousarray(permute(self.blocks))
        return GGMLWeight(blocks, self.type_name, (int(blocks.shape[0]), self.shape[1]), self.dtype)

    def dequantize(self) -> np.ndarray:
        """float32 [N, K] through gguf's own (numpy) dequantizer: the reference, and the fallback."""
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        values = dequantize(self.blocks, GGMLQuantizationType[self.type_name])
        return np.asarray(values, dtype=np.float32).reshape(self.shape)


def ggml_from_gguf(tensor: Any, dtype: torch.dtype) -> GGMLWeight | None:
    """A 2-D tensor of a kept type of a GGUF file; None for other tensors.

    A writable tensor (``gguf_file.py``'s private map) is kept as a view: no copy, its pages are the file's.
    A read-only one (``gguf.GGUFReader``'s map) is copied, as torch cannot wrap read-only arrays.
    """
    kind = tensor.tensor_type.name
    raw = np.asarray(tensor.data)
    if not kept_packed(kind, dtype) or raw.ndim != 2 or raw.dtype != np.uint8:
        return None
    rows, cols = (int(d) for d in reversed(tensor.shape))
    blocks = raw if raw.flags.writeable and raw.flags.c_contiguous else np.array(raw, dtype=np.uint8, order="C")
    return GGMLWeight(blocks, kind, (rows, cols), dtype)
