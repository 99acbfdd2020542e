"""PagedKVPool passes the core TieredKVPool conformance suite in every tier configuration and dtype."""

from __future__ import annotations

from kv_pool_helpers import small_layout

from sagellm.core.testing import TieredKVPoolConformance
from sagellm.kv_pool import PagedKVPool, PoolOptions


class TestPagedTieredKVPoolConformance(TieredKVPoolConformance):
    def make_pool(self, num_blocks: int, block_size: int) -> PagedKVPool:
        return PagedKVPool(small_layout(num_blocks, block_size))


class TestDeviceHostConformance(TieredKVPoolConformance):
    def make_pool(self, num_blocks: int, block_size: int) -> PagedKVPool:
        return PagedKVPool(small_layout(num_blocks, block_size), PoolOptions(host_blocks=4))


class TestDeviceDiskConformance(TieredKVPoolConformance):
    def make_pool(self, num_blocks: int, block_size: int) -> PagedKVPool:
        return PagedKVPool(small_layout(num_blocks, block_size), PoolOptions(disk_blocks=4))


class TestDeviceHostDiskConformance(TieredKVPoolConformance):
    def make_pool(self, num_blocks: int, block_size: int) -> PagedKVPool:
        return PagedKVPool(small_layout(num_blocks, block_size), PoolOptions(host_blocks=4, disk_blocks=16))


class TestInt8TieredConformance(TieredKVPoolConformance):
    def make_pool(self, num_blocks: int, block_size: int) -> PagedKVPool:
        layout = small_layout(num_blocks, block_size, dtype="int8")
        return PagedKVPool(layout, PoolOptions(host_blocks=4, disk_blocks=4))


class TestBfloat16TieredConformance(TieredKVPoolConformance):
    def make_pool(self, num_blocks: int, block_size: int) -> PagedKVPool:
        layout = small_layout(num_blocks, block_size, dtype="bfloat16")
        return PagedKVPool(layout, PoolOptions(host_blocks=4, disk_blocks=4))
