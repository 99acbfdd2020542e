"""sagellm-kv-pool: paged, ref-counted KV blocks over one contiguous device tensor.

``PagedKVPool`` implements :class:`sagellm.core.protocols.KVPool`; engines
build it through the registry (``create_kv_pool(config, layout=...)``) and
size it with :func:`num_blocks_for_memory`.
"""

from sagellm.kv_pool.block_allocator import BlockAllocator
from sagellm.kv_pool.completion import CompletedHandle
from sagellm.kv_pool.paged_pool import EvictionCallback, PagedKVPool
from sagellm.kv_pool.sequence_tables import SequenceBlockTables, blocks_for_tokens
from sagellm.kv_pool.sizing import bytes_per_block, num_blocks_for_memory
from sagellm.kv_pool.storage import KVStorage
from sagellm.kv_pool.version import __version__

__all__ = [
    "BlockAllocator",
    "CompletedHandle",
    "EvictionCallback",
    "KVStorage",
    "PagedKVPool",
    "SequenceBlockTables",
    "__version__",
    "blocks_for_tokens",
    "bytes_per_block",
    "num_blocks_for_memory",
]
