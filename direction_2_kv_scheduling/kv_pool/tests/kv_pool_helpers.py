"""Small CPU pools shared by the tests: 2 layers, 2 kv heads, head_dim 8.

A plain module rather than a conftest.py, with a package-prefixed name, so
it never collides with another package's tests when pytest runs them together.
"""

from __future__ import annotations

import torch

from sagellm.core.types import KVLayout, Tier
from sagellm.kv_pool import PagedKVPool, PoolOptions


def small_layout(num_blocks: int = 8, block_size: int = 4, dtype: str = "float32", device: str = "cpu") -> KVLayout:
    return KVLayout(
        num_layers=2,
        num_kv_heads=2,
        head_dim=8,
        block_size=block_size,
        num_blocks=num_blocks,
        dtype=dtype,
        device=device,
    )


def small_pool(num_blocks: int = 8, block_size: int = 4, dtype: str = "float32") -> PagedKVPool:
    return PagedKVPool(small_layout(num_blocks, block_size, dtype))


def tiered_pool(
    num_blocks: int = 8,
    host_blocks: int = 8,
    disk_blocks: int = 8,
    dtype: str = "float32",
    disk_dir: str | None = None,
    block_size: int = 4,
    device: str = "cpu",
) -> PagedKVPool:
    options = PoolOptions(host_blocks=host_blocks, disk_blocks=disk_blocks, disk_dir=disk_dir)
    return PagedKVPool(small_layout(num_blocks, block_size, dtype, device), options)


def fill_random(pool: PagedKVPool, block_id: int, tier: Tier = Tier.DEVICE, seed: int = 0) -> torch.Tensor:
    """Write distinct random K/V into every layer of a block; return a copy of what was written.

    int8 pools get random codes in [-127, 127] and random positive scales.
    """
    generator = torch.Generator().manual_seed(seed + 1000 * block_id)
    data = pool.block_data(block_id, tier)
    if data.dtype == torch.int8:
        data.copy_(torch.randint(-127, 128, data.shape, generator=generator, dtype=torch.int8))
        scales = pool.block_scales(block_id, tier)
        assert scales is not None
        scales.copy_(torch.rand(scales.shape, generator=generator) + 0.01)
    else:
        data.copy_(torch.randn(data.shape, generator=generator))
    return data.clone()
