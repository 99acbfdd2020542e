"""int8 KV blocks with per-block scales: quantize on write, dequantize (or fold the scales) on read.

The pool owns the format (``sagellm.kv_pool``, ``KVLayout(dtype="int8")``):
each layer's K and V blocks hold int8 codes, and beside them one float32
scale per block (``pool.kv_scales(layer)`` -> K scales, V scales, each
``[num_blocks]``)::

    value ~= code * scale        code in [-127, 127]
    scale  = max |x| over the tokens written into the block so far / 127

Blocks fill token by token across decode steps, so a write may raise a
block's scale; the codes already in the block are then requantized to the
new scale (``round(code * old / new)``), which costs them at most one more
half step. This is the pool's own write rule (``kv_quant.write_tokens``),
restated over the engine's per-step index so that every layer shares one
block look-up; migrations, copy-on-write and the pool's ``read_kv`` see
exactly what the attention wrote (a test checks codes and scales bit for
bit).

Each layer's write rewrites the whole of every touched block, K and V in
one pass when the pool keeps them side by side (the paged pool does: one
``[2, ...]`` strided view covers both)::

    touched blocks   gather -> float -> x old/new -> put the new tokens / new
    [2, U, bs, H, D]    -> round -> int8 -> scatter back

which is one small block per sequence in a decode step and about the
chunk's own size in a prefill. On CPU that is ~15 small ops per layer
(~10 ms of a 64-sequence decode step), so where the layer's fused kernel
set offers ``quantize_kv`` (sagellm-kernel-fusion) the same rule runs as
one compiled pass instead, bit for bit equal; this module's PyTorch
version serves everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sagellm.engines.model.attention_metadata import AttentionMetadata, BlockWrites

QMAX = 127.0
SCALE_DTYPE = torch.float32
TINY = torch.finfo(SCALE_DTYPE).tiny


@dataclass(frozen=True, slots=True)
class KVScales:
    """One int8 layer's per-block scales, and [2, ...] views that reach K and V at once where they can.

    ``codes`` / ``scales`` stack K and V (index 0 / 1) as *views* of the
    pool's memory, so writes through them land in the pool. They exist
    when the pool lays V at a fixed offset from K with the same strides
    (the paged pool's ``[layers, 2, blocks, ...]`` storage); otherwise
    they are None and K and V are written one after the other.
    """

    key: torch.Tensor  # [num_blocks] float32
    value: torch.Tensor
    codes: torch.Tensor | None = None  # [2, num_blocks, block_size, Hkv, D] int8
    scales: torch.Tensor | None = None  # [2, num_blocks]

    @classmethod
    def of(
        cls, key_blocks: torch.Tensor, value_blocks: torch.Tensor, key_scales: torch.Tensor, value_scales: torch.Tensor
    ) -> KVScales:
        codes, scales = paired_view(key_blocks, value_blocks), paired_view(key_scales, value_scales)
        if codes is None or scales is None:
            return cls(key_scales, value_scales)
        return cls(key_scales, value_scales, codes, scales)

    def per_position(self, block_table: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(key, value) scale of every context position of each row of ``block_table``, each [B, L]."""
        batch, num_blocks = block_table.shape
        ids = block_table.reshape(-1)
        if self.scales is not None:
            per_block = self.scales.index_select(1, ids)
        else:
            per_block = torch.stack((self.key.index_select(0, ids), self.value.index_select(0, ids)))
        spread = per_block.view(2, batch, num_blocks, 1).expand(2, batch, num_blocks, block_size)
        both = spread.reshape(2, batch, num_blocks * block_size)
        return both[0], both[1]


def paired_view(key: torch.Tensor, value: torch.Tensor) -> torch.Tensor | None:
    """A [2, *key.shape] view whose [0] is ``key`` and [1] is ``value``, if one strided view can be both."""
    same_kind = key.dtype == value.dtype and key.device == value.device and key.shape == value.shape
    if not same_kind or key.stride() != value.stride() or key.numel() == 0:
        return None
    if key.untyped_storage().data_ptr() != value.untyped_storage().data_ptr():
        return None
    offset = value.storage_offset() - key.storage_offset()
    extent = 1 + sum((size - 1) * stride for size, stride in zip(key.shape, key.stride()))
    if offset < extent:  # V before K, or overlapping: no view with a non-negative stride can be both
        return None
    return key.as_strided((2, *key.shape), (offset, *key.stride()), key.storage_offset())


def block_writes(meta: AttentionMetadata, block_size: int) -> BlockWrites:
    """The step's :class:`BlockWrites`, computed by the first layer and cached on ``meta``.

    A pure decode step writes one token into each sequence's last block,
    and sequences never share a block they write into (shared prefix blocks
    are full), so it needs no ``unique`` (a host sync on CUDA).
    """
    if meta.block_writes is None:
        slots = meta.slot_mapping
        blocks = torch.div(slots, block_size, rounding_mode="floor")
        offsets = slots - blocks * block_size
        if meta.prefills:
            touched, inverse = torch.unique(blocks, return_inverse=True)
            meta.block_writes = BlockWrites(touched, inverse, offsets, one_per_block=False)
        else:
            rows = torch.arange(slots.shape[0], device=slots.device)
            meta.block_writes = BlockWrites(blocks, rows, offsets, one_per_block=True)
    return meta.block_writes


def write_quantized(
    k: torch.Tensor,
    v: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    scales: KVScales,
    meta: AttentionMetadata,
    fused: Any = None,
) -> None:
    """Quantize this step's K/V ([T, Hkv, D]) into int8 blocks, raising block scales where needed.

    ``fused`` (the layer's :class:`~sagellm.engines.model.attention.FusedAttention`) does it in one
    compiled pass where its kernel set has ``quantize_kv``; the result is the same bit for bit.
    """
    if fused is not None and _fused_write(fused, k, v, key_blocks, value_blocks, scales, meta.slot_mapping):
        return
    writes = block_writes(meta, key_blocks.shape[1])
    if scales.codes is not None and scales.scales is not None:
        quantize_into(scales.codes, scales.scales, writes, torch.stack((k, v)))
    else:
        quantize_into(key_blocks.unsqueeze(0), scales.key.unsqueeze(0), writes, k.unsqueeze(0))
        quantize_into(value_blocks.unsqueeze(0), scales.value.unsqueeze(0), writes, v.unsqueeze(0))


def _fused_write(
    fused: Any,
    k: torch.Tensor,
    v: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    scales: KVScales,
    slots: torch.Tensor,
) -> bool:
    if scales.codes is not None and scales.scales is not None:
        return bool(fused.quantize_kv(scales.codes, scales.scales, slots, torch.stack((k, v))))
    if not fused.quantize_kv(key_blocks.unsqueeze(0), scales.key.unsqueeze(0), slots, k.unsqueeze(0)):
        return False
    # V has K's dtype, device and layout: served as well
    return bool(fused.quantize_kv(value_blocks.unsqueeze(0), scales.value.unsqueeze(0), slots, v.unsqueeze(0)))


def quantize_into(codes: torch.Tensor, scales: torch.Tensor, writes: BlockWrites, values: torch.Tensor) -> None:
    """Write ``values`` [P, T, H, D] into ``codes`` [P, N, block_size, H, D]; update ``scales`` [P, N].

    P stacks caches that share the step's slots (K and V). All tensor ops on
    the cache's device, no host sync.
    """
    ids, parts = writes.block_ids, values.shape[0]
    values = values.to(SCALE_DTYPE)
    needed = values.abs().amax(dim=(2, 3)).div_(QMAX)
    if not writes.one_per_block:  # several tokens per block: the largest sets the block's need
        per_block = torch.zeros(parts, ids.shape[0], dtype=SCALE_DTYPE, device=ids.device)
        needed = per_block.scatter_reduce_(1, writes.inverse.expand(parts, -1), needed, reduce="amax")
    old = scales.index_select(1, ids)
    new = torch.maximum(old, needed)
    divisor = new.clamp_min(TINY)  # an all-zero block keeps scale 0 (its codes read as 0 whatever they are)
    # Codes already in a touched block move to its new scale; ratio 1 where the scale did not grow (exact).
    blocks = gather_codes(codes, 1, ids).to(SCALE_DTYPE).mul_((old / divisor).view(parts, -1, 1, 1, 1))
    token_divisor = divisor if writes.one_per_block else divisor.index_select(1, writes.inverse)
    blocks[:, writes.inverse, writes.offsets] = values / token_divisor.view(parts, -1, 1, 1)
    # No clamp: |x| <= 127 * scale for every x the scale was raised for, so rounding stays within +-127.
    as_words(codes).index_copy_(1, ids, as_words(blocks.round_().to(codes.dtype)))
    scales.index_copy_(1, ids, new)


def gather_codes(codes: torch.Tensor, dim: int, ids: torch.Tensor) -> torch.Tensor:
    """``codes.index_select(dim, ids)`` for int8 blocks, moved as words (see :func:`as_words`)."""
    return as_words(codes).index_select(dim, ids).view(codes.dtype)


def as_words(codes: torch.Tensor) -> torch.Tensor:
    """The same int8 bytes viewed as int64 (or int32) words, where the layout allows.

    PyTorch's CPU ``index_copy_`` / ``index_select`` move int8 tensors an
    element at a time: 8 blocks of 3 KB take 41 us as int8 and 8 us as
    int64 words (2-core Zen 4), which is most of an int8 decode write.
    """
    for word, size in ((torch.int64, 8), (torch.int32, 4)):
        if codes.shape[-1] % size == 0 and codes.stride(-1) == 1:
            try:
                return codes.view(word)
            except RuntimeError:  # a stride or offset that is not a whole number of words
                continue
    return codes


def dequantize(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``codes`` [n, block_size, heads, dim] times their per-block ``scales`` [n], as ``dtype``.

    Multiplied in float32 and rounded once to ``dtype``, as the pool's ``read_kv`` does.
    """
    return (codes.to(SCALE_DTYPE) * scales.view(-1, 1, 1, 1)).to(dtype)
