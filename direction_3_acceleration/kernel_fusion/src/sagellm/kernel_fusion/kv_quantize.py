"""Writes into an int8 KV cache (codes + one float32 scale per block), one compiled pass per layer.

The format is sagellm-kv-pool's ``cache_dtype: int8``: ``value ~= code *
scale``, ``scale = max |x| over the tokens written into the block so far /
127``. A token that needs more range raises its block's scale and the codes
already in the block are requantized to it (``round(code * old / new)``).
:func:`quantize_kv` does that for a whole step (``slots`` may put several
tokens into one block, as a prefill does) with the same float32 operations
as the pool's own rule, so codes and scales match it bit for bit.
"""

from __future__ import annotations

import torch

from sagellm.core.errors import InvalidRequestError
from sagellm.kernel_fusion.cpu_extension import load_kernels

SOURCE = "int8_kv_write"
QMAX = 127.0
VALUE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def quantize_kv_available(codes: torch.Tensor, values: torch.Tensor) -> bool:
    """Whether the compiled pass takes these (CPU int8 codes, float values, and it built)."""
    return (
        codes.device.type == "cpu"
        and codes.dtype == torch.int8
        and values.dtype in VALUE_DTYPES
        and load_kernels(SOURCE) is not None
    )


def quantize_kv(codes: torch.Tensor, scales: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> None:
    """Write ``values`` [P, T, H, D] at ``slots`` [T] into ``codes`` [P, N, block_size, H, D] (int8) and
    raise ``scales`` [P, N] (float32) where needed, in place. P stacks caches written at the same slots
    (an engine's K and V)."""
    _check(codes, scales, slots, values)
    if quantize_kv_available(codes, values) and _blocks_contiguous(codes):
        load_kernels(SOURCE).quantize_kv(codes, scales, slots.to(torch.long).contiguous(), values.contiguous())
    else:
        _write_blocks(codes, scales, slots, values)


def quantize_kv_reference(codes: torch.Tensor, scales: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> None:
    """The same, one touched block at a time in plain PyTorch (the tests' oracle)."""
    _check(codes, scales, slots, values)
    _write_blocks(codes, scales, slots, values)


def _write_blocks(codes: torch.Tensor, scales: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> None:
    """The reference's body, for inputs already checked (the fallback checks once, not twice)."""
    block_size = codes.shape[2]
    slot_list = [int(s) for s in slots]
    by_block: dict[int, list[int]] = {}
    for token, slot in enumerate(slot_list):
        by_block.setdefault(slot // block_size, []).append(token)
    for part in range(codes.shape[0]):
        for block, tokens in by_block.items():
            rows = values[part, tokens].float()  # [n, H, D]
            needed = (rows.abs().amax(dim=(1, 2)) / QMAX).max()
            old = scales[part, block].clone()
            new = torch.maximum(old, needed)
            divisor = new.clamp_min(torch.finfo(torch.float32).tiny)
            requantized = (codes[part, block].float() * (old / divisor)).round()
            offsets = torch.tensor([slot_list[t] % block_size for t in tokens])
            requantized[offsets] = (rows / divisor).round()
            codes[part, block] = requantized.to(torch.int8)
            scales[part, block] = new


def _check(codes: torch.Tensor, scales: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> None:
    if codes.dtype != torch.int8 or codes.dim() != 5:
        raise InvalidRequestError(
            f"codes must be int8 [P, N, block_size, H, D], got {codes.dtype} {tuple(codes.shape)}"
        )
    parts, num_blocks = codes.shape[:2]
    if scales.dtype != torch.float32 or tuple(scales.shape) != (parts, num_blocks):
        raise InvalidRequestError(
            f"scales must be float32 [{parts}, {num_blocks}], got {scales.dtype} {tuple(scales.shape)}"
        )
    if slots.dim() != 1 or tuple(values.shape) != (parts, slots.shape[0], *codes.shape[3:]):
        raise InvalidRequestError(
            f"values must be [{parts}, {slots.shape[0] if slots.dim() == 1 else '?'}, {codes.shape[3]}, "
            f"{codes.shape[4]}] for these slots, got {tuple(values.shape)}"
        )
    if values.dtype not in VALUE_DTYPES:
        raise InvalidRequestError(f"values must be float32, bfloat16 or float16, got {values.dtype}")
    if slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= num_blocks * codes.shape[2]):
        raise InvalidRequestError("a slot lies outside the cache")


def _blocks_contiguous(codes: torch.Tensor) -> bool:
    heads, dim = codes.shape[3], codes.shape[4]
    return codes.stride(4) == 1 and codes.stride(3) == dim and codes.stride(2) == heads * dim
