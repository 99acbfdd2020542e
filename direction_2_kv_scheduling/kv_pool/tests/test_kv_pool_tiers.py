"""Host and disk tiers: allocation per tier, errors, stats, files, close."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
import torch
from kv_pool_helpers import small_layout, tiered_pool

from sagellm.core.errors import ConfigError, KVBlockError, NotSupportedError, OutOfBlocksError
from sagellm.core.types import BlockMove, MigrationPlan, Tier
from sagellm.kv_pool import PagedKVPool, PoolOptions


@pytest.mark.parametrize("tier", [Tier.DEVICE, Tier.HOST, Tier.DISK])
def test_each_tier_allocates_and_frees_its_own_ids(tier: Tier, tmp_path: Path) -> None:
    with tiered_pool(num_blocks=8, host_blocks=6, disk_blocks=4, disk_dir=str(tmp_path)) as pool:
        size = {Tier.DEVICE: 8, Tier.HOST: 6, Tier.DISK: 4}[tier]
        ids = pool.allocate(size, tier)
        assert sorted(ids) == list(range(size))
        assert not pool.can_allocate(1, tier)
        with pytest.raises(OutOfBlocksError, match=f"only 0 of {size}"):
            pool.allocate(1, tier)
        assert all(pool.ref_count(b, tier) == 1 and pool.block_meta(b, tier).tier == tier for b in ids)
        pool.retain(ids[:1], tier)
        pool.free(ids, tier)
        assert pool.ref_count(ids[0], tier) == 1
        pool.free(ids[:1], tier)
        assert pool.can_allocate(size, tier)
        with pytest.raises(KVBlockError, match="double free"):
            pool.free(ids[:1], tier)
        others = [t for t in pool.tiers if t != tier]
        assert all(pool.can_allocate(pool.stats().tiers[pool.tiers.index(t)].num_blocks, t) for t in others)


def test_tier_stats_report_used_and_free_blocks_per_tier() -> None:
    with tiered_pool(num_blocks=8, host_blocks=6, disk_blocks=4) as pool:
        pool.allocate(2)
        pool.allocate(3, Tier.HOST)
        pool.allocate(4, Tier.DISK)
        usage = {u.tier: u for u in pool.stats().tiers}
        assert [(u.num_used_blocks, u.num_free_blocks) for u in usage.values()] == [(2, 6), (3, 3), (4, 0)]
        assert usage[Tier.HOST].utilization == pytest.approx(0.5)
        assert pool.get_utilization(Tier.DISK) == 1.0 and pool.get_fragmentation(Tier.HOST) == 0.0
        assert pool.stats().utilization == pytest.approx(2 / 8)  # device figures unchanged


def test_single_tier_pool_reports_only_the_device_tier() -> None:
    pool = PagedKVPool(small_layout())
    assert pool.tiers == (Tier.DEVICE,) and [u.tier for u in pool.stats().tiers] == [Tier.DEVICE]
    assert pool.disk_path is None and pool.stats().migrations == ()
    assert pool.get_utilization(Tier.HOST) == 0.0


def test_unknown_and_absent_tiers_are_not_supported() -> None:
    pool = tiered_pool(disk_blocks=0)
    with pytest.raises(NotSupportedError, match="unknown KV tier 'ssd'"):
        pool.allocate(1, "ssd")  # type: ignore[arg-type]
    with pytest.raises(NotSupportedError, match="no disk tier"):
        pool.allocate(1, Tier.DISK)
    assert not pool.can_allocate(1, Tier.DISK)
    assert pool.allocate(1, "host") == [0]  # type: ignore[arg-type]  -- the plain value works too
    (block,) = pool.allocate(1)
    with pytest.raises(NotSupportedError, match="no disk tier"):
        pool.migrate(MigrationPlan((BlockMove(block, Tier.DEVICE, Tier.DISK),)))
    with pytest.raises(NotSupportedError, match="unknown KV tier"):
        pool.migrate(MigrationPlan((BlockMove(block, "nvme", Tier.HOST),)))  # type: ignore[arg-type]
    assert pool.ref_count(block) == 1 and pool.stats().tiers[1].num_used_blocks == 1


def test_offload_tiers_are_block_major_and_contiguous_per_block(tmp_path: Path) -> None:
    with tiered_pool(dtype="bfloat16", disk_dir=str(tmp_path)) as pool:
        layout = pool.layout
        shape = (layout.num_layers, 2, layout.block_size, layout.num_kv_heads, layout.head_dim)
        for tier in (Tier.HOST, Tier.DISK):
            block = pool.block_data(3, tier)
            assert tuple(block.shape) == shape and block.is_contiguous() and block.dtype == torch.bfloat16
            assert pool.tier_nbytes(tier) == 8 * layout.bytes_per_block
        assert tuple(pool.block_data(3).shape) == shape  # the device view has the same shape (strided)
        assert not pool.block_data(0, Tier.HOST).is_pinned()  # CPU device tier: plain host memory


def test_disk_tier_lives_in_its_own_directory_and_close_removes_it(tmp_path: Path) -> None:
    pool = tiered_pool(disk_dir=str(tmp_path / "kv"))
    path = pool.disk_path
    assert path is not None and Path(path).parent == tmp_path / "kv"
    assert sorted(os.listdir(path)) == ["kv.bin"]
    assert os.path.getsize(os.path.join(path, "kv.bin")) == pool.tier_nbytes(Tier.DISK)
    pool.close()
    assert not os.path.exists(path) and os.listdir(tmp_path / "kv") == []
    pool.close()  # idempotent
    assert pool.closed


def test_int8_disk_tier_also_maps_scales_and_removes_them(tmp_path: Path) -> None:
    with tiered_pool(dtype="int8", disk_dir=str(tmp_path)) as pool:
        path = pool.disk_path
        assert path is not None and sorted(os.listdir(path)) == ["kv.bin", "scales.bin"]
    assert not os.path.exists(path)


def test_disk_files_go_when_an_unclosed_pool_is_collected(tmp_path: Path) -> None:
    pool = tiered_pool(disk_dir=str(tmp_path))
    path = pool.disk_path
    del pool
    gc.collect()
    assert path is not None and not os.path.exists(path)


def test_closed_pool_refuses_migrations_and_offload_allocations(tmp_path: Path) -> None:
    pool = tiered_pool(disk_dir=str(tmp_path))
    (block,) = pool.allocate(1)
    pool.close()
    with pytest.raises(KVBlockError, match="closed"):
        pool.swap_out([block])
    with pytest.raises(KVBlockError, match="closed"):
        pool.allocate(1, Tier.DISK)


def test_unusable_disk_dir_is_a_config_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError, match="disk tier"):
        tiered_pool(disk_dir=str(not_a_dir / "sub"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_pinning_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="pin_host_memory"):
        PagedKVPool(small_layout(), PoolOptions(host_blocks=2, pin_host_memory=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pool_pins_host_memory_and_migrates_on_its_copy_stream(tmp_path: Path) -> None:
    from kv_pool_helpers import fill_random

    with tiered_pool(dtype="bfloat16", device="cuda", disk_dir=str(tmp_path)) as pool:
        assert pool.block_data(0, Tier.HOST).is_pinned() and pool.block_data(0).is_cuda
        blocks = pool.allocate(3)
        data = [fill_random(pool, b) for b in blocks]
        for tier in (Tier.HOST, Tier.DISK):
            out = pool.swap_out(blocks, tier)
            back = pool.swap_in(out.result().dst_block_ids, tier)
            back.wait()
            blocks = back.dst_block_ids
            assert all(torch.equal(pool.block_data(b), d) for b, d in zip(blocks, data))
        assert all(rate.gb_per_s > 0 for rate in pool.stats().migrations)
