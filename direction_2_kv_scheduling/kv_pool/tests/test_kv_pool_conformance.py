"""PagedKVPool passes the core KVPool conformance suite."""

from __future__ import annotations

from kv_pool_helpers import small_layout

from sagellm.core.testing import KVPoolConformance
from sagellm.kv_pool import PagedKVPool


class TestPagedKVPoolConformance(KVPoolConformance):
    def make_pool(self, num_blocks: int, block_size: int) -> PagedKVPool:
        return PagedKVPool(small_layout(num_blocks, block_size))
