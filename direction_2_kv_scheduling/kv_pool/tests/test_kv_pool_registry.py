"""Registry construction, from_config checks, migrate, sizing."""

from __future__ import annotations

import pytest
from kv_pool_helpers import small_layout

from sagellm.core.config import KVPoolSection, load_config
from sagellm.core.errors import ConfigError, NotSupportedError
from sagellm.core.protocols import CompletionHandle, KVPool
from sagellm.core.registry import available, create_kv_pool
from sagellm.core.types import BlockMove, MigrationPlan, Tier
from sagellm.kv_pool import PagedKVPool, bytes_per_block, num_blocks_for_memory


def test_entry_point_is_registered() -> None:
    assert available("kv_pool")["paged"] == "sagellm.kv_pool:PagedKVPool"


def test_create_kv_pool_from_default_config() -> None:
    layout = small_layout(num_blocks=16, block_size=16)
    pool = create_kv_pool(load_config(), layout=layout)
    assert isinstance(pool, PagedKVPool) and isinstance(pool, KVPool)
    assert pool.layout == layout and pool.num_free_blocks == 16


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (KVPoolSection(block_size=32), "block_size"),
        (KVPoolSection(cache_dtype="float16"), "cache_dtype"),
        (KVPoolSection(options={"typo": 1}), "no options"),
    ],
)
def test_from_config_rejects_a_section_the_layout_ignores(section: KVPoolSection, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PagedKVPool.from_config(section, layout=small_layout(block_size=16))


def test_migrate_empty_plan_is_already_complete() -> None:
    pool = PagedKVPool(small_layout())
    for migrate in (pool.migrate, pool.migrate_blocks):
        handle = migrate(MigrationPlan())
        assert isinstance(handle, CompletionHandle)
        handle.wait(timeout=0.1)
        assert handle.done()


def test_migrate_real_plan_is_not_supported_yet() -> None:
    pool = PagedKVPool(small_layout())
    (block,) = pool.allocate(1)
    plan = MigrationPlan((BlockMove(block, Tier.DEVICE, Tier.HOST),))
    with pytest.raises(NotSupportedError, match="only the device tier"):
        pool.migrate(plan)


def test_num_blocks_for_memory() -> None:
    # SmolLM2-135M: 30 layers, 3 kv heads, head_dim 64, block 16
    assert bytes_per_block(30, 3, 64, 16, "bfloat16") == 368_640
    assert num_blocks_for_memory(2**30, 30, 3, 64, 16, "bfloat16") == 2912
    assert num_blocks_for_memory(2**30, 30, 3, 64, 16, "float32") == 1456
    assert num_blocks_for_memory(100, 30, 3, 64, 16, "float32") == 0
    layout = small_layout(num_blocks=num_blocks_for_memory(1 << 20, 2, 2, 8, 4, "float16"), dtype="float16")
    assert PagedKVPool(layout).nbytes <= 1 << 20
    with pytest.raises(ConfigError):
        num_blocks_for_memory(1 << 20, 0, 2, 8, 4, "float16")
