"""vLLM's per-layer KV tensors seen block by block, and the sageLLM pool layout that stores them.

vLLM's attention backends lay a layer's cache out differently (FlashAttention
``[2, num_blocks, block_size, heads, dim]``, standardized ``[num_blocks, H,
N, C]`` views, MLA ``[num_blocks, block_size, dim]``), but every one keeps a
block's data together along one *block dimension*. The connector moves
whole blocks, so it needs only that dimension and the block's element
count, never the meaning of the other axes::

    vLLM layer l:   kv.select(block_dim, b)  ── E elements ──┐ reshape(-1), split in halves
    pool layer l:   k[s] (E/2 elements) ─────────────────────┤
                    v[s] (E/2 elements) ─────────────────────┘

The pool is built with ``num_kv_heads=1`` and ``head_dim = E / (2 *
block_size)``, so one pool block holds exactly one vLLM block of every
layer; the pool stores those bytes and never interprets them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sagellm.core.errors import ConfigError
from sagellm.core.types import KVLayout

POOL_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


@dataclass(frozen=True, slots=True)
class BlockShape:
    """Size of one vLLM block: ``elements_per_layer`` elements of ``dtype`` in each of ``num_layers`` layers."""

    num_layers: int
    block_size: int
    elements_per_layer: int
    dtype: str

    @property
    def bytes_per_block(self) -> int:
        return self.num_layers * self.elements_per_layer * torch.empty((), dtype=getattr(torch, self.dtype)).itemsize

    def pool_layout(self, num_blocks: int, device: str) -> KVLayout:
        """A pool layout whose block holds one vLLM block of every layer (K half, V half)."""
        half, rest = divmod(self.elements_per_layer, 2 * self.block_size)
        if rest or half == 0:
            raise ConfigError(
                f"a vLLM block of {self.elements_per_layer} elements per layer does not split into "
                f"2 x {self.block_size} token rows; the sageLLM connector cannot store this KV layout"
            )
        return KVLayout(self.num_layers, 1, half, self.block_size, num_blocks, self.dtype, device)


def pool_dtype(dtype: torch.dtype) -> str:
    """The pool's name for a vLLM cache dtype; fp8 and other codes are refused (the pool has no raw-byte tier)."""
    if dtype not in POOL_DTYPES:
        raise ConfigError(f"the sageLLM connector stores float32, bfloat16 or float16 KV caches, not {dtype}")
    return POOL_DTYPES[dtype]


def block_dim(kv: torch.Tensor, num_blocks: int) -> int:
    """The dimension of ``kv`` that indexes blocks: 0 (block-major) or 1 (K/V-major, ``[2, num_blocks, ...]``)."""
    if kv.shape[0] == num_blocks:
        return 0
    if kv.dim() > 1 and kv.shape[1] == num_blocks:
        return 1
    raise ConfigError(f"no block dimension of size {num_blocks} in a KV cache of shape {tuple(kv.shape)}")


def shape_of(kv_caches: Mapping[str, torch.Tensor], num_blocks: int, block_size: int) -> BlockShape:
    """The BlockShape of vLLM's registered caches; every layer must agree."""
    if not kv_caches:
        raise ConfigError("vLLM registered no KV caches with the sageLLM connector")
    per_layer = {kv.select(block_dim(kv, num_blocks), 0).numel() for kv in kv_caches.values()}
    dtypes = {kv.dtype for kv in kv_caches.values()}
    if len(per_layer) != 1 or len(dtypes) != 1:
        raise ConfigError("the sageLLM connector needs every layer's blocks of one size and dtype (one KV group)")
    return BlockShape(len(kv_caches), block_size, per_layer.pop(), pool_dtype(dtypes.pop()))


def shape_from_spec(spec: Any, num_layers: int) -> BlockShape:
    """The BlockShape the scheduler side derives from vLLM's ``AttentionSpec`` (no tensors there)."""
    dtype = pool_dtype(spec.dtype)
    itemsize = torch.empty((), dtype=spec.dtype).itemsize
    return BlockShape(num_layers, spec.block_size, spec.page_size_bytes // itemsize, dtype)


def read_blocks(kv: torch.Tensor, dim: int, block_ids: Sequence[int]) -> torch.Tensor:
    """Blocks of one vLLM layer as rows ``[len(block_ids), E]`` (a copy)."""
    index = torch.tensor(list(block_ids), dtype=torch.long, device=kv.device)
    return kv.index_select(dim, index).movedim(dim, 0).reshape(len(block_ids), -1)


def write_blocks(kv: torch.Tensor, dim: int, block_ids: Sequence[int], rows: torch.Tensor) -> None:
    """Write rows ``[len(block_ids), E]`` into blocks of one vLLM layer, in place."""
    index = torch.tensor(list(block_ids), dtype=torch.long, device=kv.device)
    block_shape = kv.select(dim, 0).shape
    data = rows.to(device=kv.device, dtype=kv.dtype).reshape(len(block_ids), *block_shape).movedim(0, dim)
    kv.index_copy_(dim, index, data)


def pool_rows(key: torch.Tensor, value: torch.Tensor, slots: Sequence[int]) -> torch.Tensor:
    """Pool blocks ``slots`` of one layer as rows ``[len(slots), E]``: K half then V half."""
    index = torch.tensor(list(slots), dtype=torch.long, device=key.device)
    count = len(slots)
    return torch.cat(
        [key.index_select(0, index).reshape(count, -1), value.index_select(0, index).reshape(count, -1)], 1
    )


def put_pool_rows(key: torch.Tensor, value: torch.Tensor, slots: Sequence[int], rows: torch.Tensor) -> None:
    """Store rows ``[len(slots), E]`` in pool blocks ``slots`` of one layer."""
    index = torch.tensor(list(slots), dtype=torch.long, device=key.device)
    rows = rows.to(device=key.device, dtype=key.dtype)
    half = rows.shape[1] // 2
    key.index_copy_(0, index, rows[:, :half].reshape(len(slots), *key.shape[1:]))
    value.index_copy_(0, index, rows[:, half:].reshape(len(slots), *value.shape[1:]))
