"""Turn a memory budget into a block count, so the engine sizes the pool from GB.

One block holds ``block_size`` token positions of K and V for every layer::

    bytes_per_block = 2 (K, V) * num_layers * block_size * num_kv_heads * head_dim * dtype_bytes

    SmolLM2-135M (30 layers, 3 kv heads, head_dim 64), block 16, bfloat16:
        2 * 30 * 16 * 3 * 64 * 2 = 368,640 bytes  (23,040 per token)
        1 GiB -> 2,912 blocks -> 46,592 tokens

int8 pools add one float32 scale per layer for K and V: 2 * num_layers * 4 bytes
(240 bytes for SmolLM2, 0.13 % of its 184,320-byte int8 block).
"""

from __future__ import annotations

import torch

from sagellm.core.errors import ConfigError
from sagellm.kv_pool.storage import resolve_dtype, scale_bytes_per_block


def bytes_per_block(
    num_layers: int, num_kv_heads: int, head_dim: int, block_size: int, dtype: str | torch.dtype
) -> int:
    """Bytes one block occupies in :class:`~sagellm.kv_pool.PagedKVPool` storage (int8 scales included)."""
    dims = {"num_layers": num_layers, "num_kv_heads": num_kv_heads, "head_dim": head_dim, "block_size": block_size}
    for name, value in dims.items():
        if value < 1:
            raise ConfigError(f"{name} must be >= 1 to size a KV pool (got {value})")
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype)
    element_size = torch.empty((), dtype=torch_dtype).element_size()
    codes = 2 * num_layers * block_size * num_kv_heads * head_dim * element_size
    return codes + scale_bytes_per_block(num_layers, torch_dtype)


def num_blocks_for_memory(
    memory_bytes: float,
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    block_size: int,
    dtype: str | torch.dtype,
) -> int:
    """How many whole blocks fit in ``memory_bytes`` (0 when not even one does).

    Example: ``num_blocks_for_memory(int(section.memory_gb * 2**30), 30, 3, 64, 16, "bfloat16")``.
    """
    if memory_bytes < 0:
        raise ConfigError(f"memory budget must be >= 0 bytes (got {memory_bytes})")
    return int(memory_bytes // bytes_per_block(num_layers, num_kv_heads, head_dim, block_size, dtype))
