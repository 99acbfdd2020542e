"""GGUF 4-bit weights (Q4_0, Q4_1) kept as codes, scales and minimums.

A GGUF Q4 tensor stores each row in blocks of 32 weights::

    Q4_1 block (20 bytes): d (fp16) | m (fp16) | 16 bytes of nibbles
    Q4_0 block (18 bytes): d (fp16) |            16 bytes of nibbles
    byte j holds weight j (low nibble) and weight j + 16 (high nibble)
    weight = d * code + m          (Q4_0: m = -8 * d)

Keeping the codes lets small batches run the file's own 4-bit weights
through a 4-bit matmul kernel (a quarter of bf16's bytes: decode at batch
1 is bound by reading weights) instead of their dequantized copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GROUP_SIZE = 32
_BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20}


@dataclass(frozen=True, slots=True)
class Q4Weight:
    """One [N, K] weight: ``codes[n, k] * scales[n, k // 32] + mins[n, k // 32]``."""

    codes: np.ndarray  # uint8 [N, K], values 0..15
    scales: np.ndarray  # float32 [N, K / 32]
    mins: np.ndarray  # float32 [N, K / 32]

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.codes.shape
        return rows, cols

    def dequantize(self) -> np.ndarray:
        rows, cols = self.shape
        grouped = self.codes.reshape(rows, -1, GROUP_SIZE).astype(np.float32)
        return (grouped * self.scales[..., None] + self.mins[..., None]).reshape(rows, cols)

    def map_rows(self, permute: Any) -> Q4Weight:
        """The same rows reordered by ``permute`` (an array -> array function over axis 0)."""
        return Q4Weight(permute(self.codes), permute(self.scales), permute(self.mins))


def q4_from_gguf(tensor: Any) -> Q4Weight | None:
    """Codes, scales and minimums of a Q4_0/Q4_1 tensor of a GGUF file (``gguf_file.py``); None for other types."""
    kind = tensor.tensor_type.name
    if kind not in _BLOCK_BYTES:
        return None
    raw = np.asarray(tensor.data, dtype=np.uint8)
    rows = raw.shape[0]
    blocks = raw.reshape(rows, -1, _BLOCK_BYTES[kind])
    scales = _halves(blocks[..., 0:2])
    if kind == "Q4_1":
        mins, nibbles = _halves(blocks[..., 2:4]), blocks[..., 4:]
    else:
        mins, nibbles = -8.0 * scales, blocks[..., 2:]
    codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).reshape(rows, -1)
    return Q4Weight(codes=codes, scales=scales, mins=mins)


def concat_rows(parts: list[Q4Weight]) -> Q4Weight:
    """Stack weights along N, as the fused qkv and gate/up projections are stacked."""
    return Q4Weight(
        codes=np.concatenate([p.codes for p in parts]),
        scales=np.concatenate([p.scales for p in parts]),
        mins=np.concatenate([p.mins for p in parts]),
    )


def _halves(pairs: np.ndarray) -> np.ndarray:
    """[..., 2] bytes -> [...] float32 from little-endian fp16."""
    return np.ascontiguousarray(pairs).view(np.float16)[..., 0].astype(np.float32)
