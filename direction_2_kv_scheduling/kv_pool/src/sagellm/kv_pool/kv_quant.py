"""Writing token KV into blocks and reading it back, with int8 codes + per-block scales.

Symmetric absmax quantization, one float32 scale per block, layer and K/V::

    scale = max |x| over the tokens written into the block so far / 127
    code  = round(x / scale)  in [-127, 127]          x ~= code * scale

Why per block: a block is the unit the pool allocates, migrates and frees,
so its scale travels with it (one ``[layers, 2]`` slice per block) and no
other block's outliers widen its range. Blocks fill token by token, so a
write may raise a block's scale; the codes already there are then rescaled
to the new scale (``round(code * old / new)``), which costs them at most one
more half step::

    |x - code * scale| <= scale / 2     for tokens written with the final scale
                       <= scale         for tokens written before the scale grew

Everything is tensor ops on the storage's device: no host sync per write.
"""

from __future__ import annotations

import torch

from sagellm.kv_pool.storage import SCALE_DTYPE

QMAX = 127.0


def write_tokens(blocks: torch.Tensor, scales: torch.Tensor | None, slots: torch.Tensor, values: torch.Tensor) -> None:
    """Store ``values`` ([T, heads, dim]) at token ``slots`` ([T]) of ``blocks`` ([N, block_size, heads, dim]).

    ``slot = block_id * block_size + offset``. Float blocks take the values
    cast to their dtype; int8 blocks (``scales`` given, [N]) are quantized.
    """
    block_size = blocks.shape[1]
    block_ids = torch.div(slots, block_size, rounding_mode="floor")
    offsets = slots - block_ids * block_size
    if scales is None:
        blocks.index_put_((block_ids, offsets), values.to(blocks.dtype))
        return
    _quantize_into(blocks, scales, block_ids, offsets, values)


def _quantize_into(
    codes: torch.Tensor, scales: torch.Tensor, block_ids: torch.Tensor, offsets: torch.Tensor, values: torch.Tensor
) -> None:
    touched, inverse = torch.unique(block_ids, return_inverse=True)
    token_absmax = values.detach().abs().amax(dim=(1, 2)).to(SCALE_DTYPE)
    needed = torch.zeros(touched.shape[0], dtype=SCALE_DTYPE, device=codes.device)
    needed.scatter_reduce_(0, inverse, token_absmax / QMAX, reduce="amax")
    old = scales[touched]
    new = torch.maximum(old, needed)
    # Rescale the codes already in the touched blocks; ratio 1 where the scale did not grow (exact).
    ratio = torch.where(new > 0, old / torch.where(new > 0, new, 1.0), 1.0).view(-1, 1, 1, 1)
    codes[touched] = torch.round(codes[touched].to(SCALE_DTYPE) * ratio).to(codes.dtype)
    scales[touched] = new
    divisor = torch.where(new > 0, new, 1.0)[inverse].view(-1, 1, 1)
    quantized = torch.round(values.to(SCALE_DTYPE) / divisor).clamp_(-QMAX, QMAX).to(codes.dtype)
    codes.index_put_((block_ids, offsets), quantized)


def read_blocks(
    blocks: torch.Tensor, scales: torch.Tensor | None, block_ids: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Blocks ``block_ids`` of ``blocks`` as a new [n, block_size, heads, dim] tensor of ``dtype``.

    int8 blocks are dequantized (``code * scale``); float blocks are gathered and cast.
    """
    gathered = blocks.index_select(0, block_ids)
    if scales is None:
        return gathered.to(dtype)
    return dequantize(gathered, scales.index_select(0, block_ids), dtype)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``codes`` [n, block_size, heads, dim] times their per-block ``scales`` [n], as ``dtype``."""
    return (codes.to(SCALE_DTYPE) * scales.view(-1, 1, 1, 1)).to(dtype)
