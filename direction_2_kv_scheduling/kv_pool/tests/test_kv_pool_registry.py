"""Registry construction, from_config checks, migrate, sizing."""

from __future__ import annotations

from pathlib import Path

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
        (KVPoolSection(options={"typo": 1}), "unknown kv_pool option"),
        (KVPoolSection(options={"host_blocks": -1}), "host_blocks"),
        (KVPoolSection(options={"migration_workers": 0}), "migration_workers"),
        (KVPoolSection(options={"compute_dtype": "int8"}), "compute_dtype"),
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


def test_migrating_to_a_tier_the_pool_lacks_is_not_supported() -> None:
    pool = PagedKVPool(small_layout())
    (block,) = pool.allocate(1)
    plan = MigrationPlan((BlockMove(block, Tier.DEVICE, Tier.HOST),))
    with pytest.raises(NotSupportedError, match="no host tier"):
        pool.migrate(plan)
    assert pool.ref_count(block) == 1


def test_from_config_builds_the_tiers_in_options(tmp_path: Path) -> None:
    section = KVPoolSection(block_size=16, options={"host_blocks": 4, "disk_blocks": 2, "disk_dir": str(tmp_path)})
    with PagedKVPool.from_config(section, layout=small_layout(block_size=16)) as pool:
        assert pool.tiers == (Tier.DEVICE, Tier.HOST, Tier.DISK)
        assert [u.num_blocks for u in pool.stats().tiers] == [8, 4, 2]
        assert pool.disk_path is not None and pool.disk_path.startswith(str(tmp_path))


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
