"""sagellm-kv-pool: paged, ref-counted KV blocks on the device, with host and disk tiers.

``PagedKVPool`` implements :class:`sagellm.core.protocols.KVPool`; engines
build it through the registry (``create_kv_pool(config, layout=...)``) and
size it with :func:`num_blocks_for_memory`. ``migrate`` moves blocks between
tiers asynchronously; ``swap_out``/``swap_in`` and ``demote``/``promote``
are the engine-facing forms of it.
"""

from sagellm.kv_pool.block_allocator import BlockAllocator
from sagellm.kv_pool.block_copier import BlockCopier, CopyTiming
from sagellm.kv_pool.block_store import BlockStore, OffloadStorage
from sagellm.kv_pool.completion import CompletedHandle, MigrationHandle, MigrationResult
from sagellm.kv_pool.kv_quant import dequantize, read_blocks, write_tokens
from sagellm.kv_pool.migration_meter import MigrationMeter
from sagellm.kv_pool.migration_planner import MigrationPlanner
from sagellm.kv_pool.migrator import Migrator
from sagellm.kv_pool.paged_pool import EvictionCallback, PagedKVPool
from sagellm.kv_pool.pool_options import PoolOptions
from sagellm.kv_pool.sequence_tables import SequenceBlockTables, blocks_for_tokens
from sagellm.kv_pool.sizing import bytes_per_block, num_blocks_for_memory
from sagellm.kv_pool.storage import KVStorage
from sagellm.kv_pool.tier_set import TierSet, TierSlot
from sagellm.kv_pool.tier_stats import TierStats
from sagellm.kv_pool.version import __version__

__all__ = [
    "BlockAllocator",
    "BlockCopier",
    "BlockStore",
    "CompletedHandle",
    "CopyTiming",
    "EvictionCallback",
    "KVStorage",
    "MigrationHandle",
    "MigrationMeter",
    "MigrationPlanner",
    "MigrationResult",
    "Migrator",
    "OffloadStorage",
    "PagedKVPool",
    "PoolOptions",
    "SequenceBlockTables",
    "TierSet",
    "TierSlot",
    "TierStats",
    "__version__",
    "blocks_for_tokens",
    "bytes_per_block",
    "dequantize",
    "num_blocks_for_memory",
    "read_blocks",
    "write_tokens",
]
