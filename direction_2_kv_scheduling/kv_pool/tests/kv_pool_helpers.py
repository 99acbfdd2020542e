"""Small CPU pools shared by the tests: 2 layers, 2 kv heads, head_dim 8.

A plain module rather than a conftest.py, with a package-prefixed name, so
it never collides with another package's tests when pytest runs them together.
"""

from __future__ import annotations

from sagellm.core.types import KVLayout
from sagellm.kv_pool import PagedKVPool


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
