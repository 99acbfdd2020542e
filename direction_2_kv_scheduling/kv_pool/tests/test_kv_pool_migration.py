"""migrate(): every direction round-trips the data, handles, moves vs copies, atomic errors, concurrency."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from kv_pool_helpers import fill_random, tiered_pool

from sagellm.core.errors import KVBlockError, NotSupportedError, OutOfBlocksError
from sagellm.core.protocols import CompletionHandle
from sagellm.core.types import BlockMove, MigrationPlan, Tier
from sagellm.kv_pool import CompletedHandle, MigrationHandle, PagedKVPool
from sagellm.kv_pool.block_copier import _runs

DIRECTIONS = list(itertools.permutations([Tier.DEVICE, Tier.HOST, Tier.DISK], 2))


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[PagedKVPool]:
    with tiered_pool(num_blocks=8, host_blocks=8, disk_blocks=8, disk_dir=str(tmp_path)) as tiered:
        yield tiered


def plan(*moves: BlockMove) -> MigrationPlan:
    return MigrationPlan(tuple(moves))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int8"])
@pytest.mark.parametrize(("src", "dst"), DIRECTIONS, ids=[f"{s.value}-{d.value}" for s, d in DIRECTIONS])
def test_every_direction_round_trips_the_bytes_exactly(src: Tier, dst: Tier, dtype: str, tmp_path: Path) -> None:
    with tiered_pool(dtype=dtype, disk_dir=str(tmp_path)) as pool:
        blocks = pool.allocate(3, src)
        written = [fill_random(pool, b, src) for b in blocks]
        scales = [pool.block_scales(b, src) for b in blocks]
        scales = [None if s is None else s.clone() for s in scales]
        there = pool.move_blocks(blocks, src, dst)
        there.wait()
        assert pool.stats().tiers[pool.tiers.index(src)].num_used_blocks == 0  # moved: sources freed
        back = pool.move_blocks(there.dst_block_ids, dst, src)
        back.wait()
        for block, data, scale in zip(back.dst_block_ids, written, scales):
            assert torch.equal(pool.block_data(block, src), data)
            if scale is not None:
                assert torch.equal(pool.block_scales(block, src), scale)  # type: ignore[arg-type]
        assert pool.stats().tiers[pool.tiers.index(dst)].num_used_blocks == 0


def test_handle_reports_pool_chosen_ids_and_a_result(pool: PagedKVPool) -> None:
    blocks = pool.allocate(3)
    handle = pool.migrate(plan(*(BlockMove(b, Tier.DEVICE, Tier.HOST) for b in blocks)))
    assert isinstance(handle, MigrationHandle) and isinstance(handle, CompletionHandle)
    ids = handle.dst_block_ids
    assert sorted(ids) == [0, 1, 2]
    result = handle.result()
    assert handle.done() and result.dst_block_ids == ids
    assert [m.block_id for m in result.moves] == blocks and all(m.dst_tier is Tier.HOST for m in result.moves)
    assert result.num_bytes == 3 * pool.layout.bytes_per_block
    assert all(pool.ref_count(b, Tier.HOST) == 1 for b in ids)
    assert all(pool.ref_count(b) == 0 for b in blocks)


def test_empty_plan_is_already_complete(pool: PagedKVPool) -> None:
    handle = pool.migrate(MigrationPlan())
    assert isinstance(handle, CompletedHandle) and handle.done() and handle.dst_block_ids == []
    assert handle.result().moves == ()


def test_explicit_destination_ids_are_honoured(pool: PagedKVPool) -> None:
    (block,) = pool.allocate(1)
    data = fill_random(pool, block)
    handle = pool.migrate(plan(BlockMove(block, Tier.DEVICE, Tier.DISK, dst_block_id=5)))
    handle.wait()
    assert handle.dst_block_ids == [5] and torch.equal(pool.block_data(5, Tier.DISK), data)
    assert pool.allocate(1, Tier.DISK) == [0]  # 5 is taken; the free stack skips it


def test_copy_keeps_the_source_and_its_reference(pool: PagedKVPool) -> None:
    (block,) = pool.allocate(1)
    data = fill_random(pool, block)
    handle = pool.migrate(plan(BlockMove(block, Tier.DEVICE, Tier.HOST, keep_source=True)))
    handle.wait()
    (copy,) = handle.dst_block_ids
    assert pool.ref_count(block) == 1 and pool.ref_count(copy, Tier.HOST) == 1
    assert torch.equal(pool.block_data(copy, Tier.HOST), data) and torch.equal(pool.block_data(block), data)
    pool.free([block])  # the caller still owns it


def test_metadata_follows_a_demoted_block(pool: PagedKVPool) -> None:
    (block,) = pool.allocate(1)
    meta = pool.block_meta(block)
    meta.prefix_hash, meta.prefix_depth = 1234, 3
    pool.touch([block])
    handle = pool.demote([block])
    handle.wait()
    moved = pool.block_meta(handle.dst_block_ids[0], Tier.HOST)
    assert (moved.prefix_hash, moved.prefix_depth, moved.access_count) == (1234, 3, 2)
    assert moved.created_at == meta.created_at and moved.tier is Tier.HOST


def test_no_space_raises_out_of_blocks_and_changes_nothing(tmp_path: Path) -> None:
    with tiered_pool(num_blocks=8, host_blocks=2, disk_blocks=2, disk_dir=str(tmp_path)) as pool:
        blocks = pool.allocate(4)
        with pytest.raises(OutOfBlocksError, match="host tier: only 2 of 2"):
            pool.swap_out(blocks[:3])
        to_host = (BlockMove(b, Tier.DEVICE, Tier.HOST) for b in blocks[:3])
        mixed = plan(BlockMove(blocks[3], Tier.DEVICE, Tier.DISK), *to_host)
        with pytest.raises(OutOfBlocksError):
            pool.migrate(mixed)  # the disk part would fit: it must not be taken either
        with pytest.raises(OutOfBlocksError, match="no tier below device has room"):
            pool.demote(blocks[:3])
        assert [u.num_used_blocks for u in pool.stats().tiers] == [4, 0, 0]
        assert all(pool.ref_count(b) == 1 for b in blocks)
        pool.free(blocks)


def test_bad_ids_raise_kv_block_error_and_change_nothing(pool: PagedKVPool) -> None:
    a, b = pool.allocate(2)
    pool.allocate(1, Tier.HOST)  # host block 0 is taken
    bad_plans = {
        "not allocated": plan(BlockMove(5, Tier.DEVICE, Tier.HOST)),
        "unknown KV block id": plan(BlockMove(99, Tier.DEVICE, Tier.HOST)),
        "already allocated": plan(BlockMove(a, Tier.DEVICE, Tier.HOST, dst_block_id=0)),
        "repeat": plan(BlockMove(a, Tier.DEVICE, Tier.HOST, 3), BlockMove(b, Tier.DEVICE, Tier.HOST, 3)),
        "2 times": plan(BlockMove(a, Tier.DEVICE, Tier.HOST), BlockMove(a, Tier.DEVICE, Tier.DISK)),
    }
    for message, bad in bad_plans.items():
        with pytest.raises(KVBlockError, match=message):
            pool.migrate(bad)
    assert [u.num_used_blocks for u in pool.stats().tiers] == [2, 1, 0]
    pool.free([a, b])


class GatedCopies:
    """Holds every migration's copies until released: makes "in flight" a state a test can look at."""

    def __init__(self, pool: PagedKVPool, fail: bool = False) -> None:
        self.release = threading.Event()
        self._copy = pool._migrator._copier.copy
        self._fail = fail
        pool._migrator._copier.copy = self  # type: ignore[method-assign]

    def __call__(self, moves, ready):  # type: ignore[no-untyped-def]
        self.release.wait()
        if self._fail:
            raise OSError("disk full")
        return self._copy(moves, ready)


def test_migration_is_asynchronous_and_pins_its_blocks(pool: PagedKVPool) -> None:
    gate = GatedCopies(pool)
    blocks = pool.allocate(2)
    data = [fill_random(pool, b) for b in blocks]
    handle = pool.swap_out(blocks)
    host_ids = handle.dst_block_ids  # known before the copy ran
    handle.wait(timeout=0.01)  # returns without the data: check done()
    assert not handle.done() and len(host_ids) == 2
    with pytest.raises(KVBlockError, match="migration in flight"):
        pool.free(blocks[:1])  # the caller gave the source up; the copy still reads it
    with pytest.raises(KVBlockError, match="migration in flight"):
        pool.free(host_ids[:1], Tier.HOST)  # not the caller's until the data landed
    with pytest.raises(KVBlockError, match="migration in flight"):
        pool.swap_out(blocks[:1])
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.01)
    assert pool.num_free_blocks == 6  # sources not recycled while in flight
    gate.release.set()
    handle.wait()
    assert handle.done() and pool.num_free_blocks == 8
    assert all(torch.equal(pool.block_data(h, Tier.HOST), d) for h, d in zip(host_ids, data))
    pool.free(host_ids, Tier.HOST)


def test_failed_copy_gives_sources_back_and_frees_destinations(pool: PagedKVPool) -> None:
    gate = GatedCopies(pool, fail=True)
    moved, copied = pool.allocate(2)
    handle = pool.migrate(
        plan(BlockMove(moved, Tier.DEVICE, Tier.HOST), BlockMove(copied, Tier.DEVICE, Tier.DISK, keep_source=True))
    )
    gate.release.set()
    with pytest.raises(OSError, match="disk full"):
        handle.wait()
    assert handle.done()
    assert pool.ref_count(moved) == 1 and pool.ref_count(copied) == 1
    assert [u.num_used_blocks for u in pool.stats().tiers] == [2, 0, 0]
    pool.free([moved, copied])  # unpinned again


def test_migration_stats_per_direction(pool: PagedKVPool) -> None:
    blocks = pool.allocate(4)
    pool.swap_out(blocks).wait()
    host = pool.allocate(2, Tier.HOST)
    pool.demote(host, Tier.DISK, src_tier=Tier.HOST).wait()
    rates = {(r.src_tier, r.dst_tier): r for r in pool.stats().migrations}
    assert set(rates) == {(Tier.DEVICE, Tier.HOST), (Tier.HOST, Tier.DISK)}
    to_host = rates[Tier.DEVICE, Tier.HOST]
    assert to_host.num_blocks == 4 and to_host.num_bytes == 4 * pool.layout.bytes_per_block
    assert to_host.seconds > 0 and to_host.gb_per_s == pytest.approx(to_host.num_bytes / to_host.seconds / 1e9)
    assert rates[Tier.HOST, Tier.DISK].num_blocks == 2


def test_concurrent_migrations_and_allocations_keep_data_and_counts(tmp_path: Path) -> None:
    with tiered_pool(num_blocks=32, host_blocks=32, disk_blocks=32, disk_dir=str(tmp_path)) as pool:
        errors: list[BaseException] = []

        def worker(seed: int) -> None:
            try:
                for round_ in range(8):
                    blocks = pool.allocate(2)
                    data = [fill_random(pool, b, seed=seed * 100 + round_) for b in blocks]
                    out = pool.swap_out(blocks, Tier.HOST if (seed + round_) % 2 else Tier.DISK)
                    src_tier = Tier.HOST if (seed + round_) % 2 else Tier.DISK
                    back = pool.swap_in(out.result().dst_block_ids, src_tier)
                    back.wait()
                    for block, expected in zip(back.dst_block_ids, data):
                        assert torch.equal(pool.block_data(block), expected)
                    pool.free(back.dst_block_ids)
            except BaseException as exc:  # noqa: BLE001 -- surfaced by the main thread below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [u.num_used_blocks for u in pool.stats().tiers] == [0, 0, 0]
        assert sum(r.num_blocks for r in pool.stats().migrations) == 6 * 8 * 2 * 2


def test_many_migrations_in_flight_at_once(pool: PagedKVPool) -> None:
    gate = GatedCopies(pool)
    blocks = pool.allocate(8)
    data = [fill_random(pool, b) for b in blocks]
    handles = [pool.swap_out([b], Tier.HOST if i % 2 else Tier.DISK) for i, b in enumerate(blocks)]
    assert pool.num_free_blocks == 0 and not any(h.done() for h in handles)
    gate.release.set()
    for i, (handle, expected) in enumerate(zip(handles, data)):
        handle.wait()
        assert torch.equal(pool.block_data(handle.dst_block_ids[0], Tier.HOST if i % 2 else Tier.DISK), expected)
    assert pool.num_free_blocks == 8


def test_close_waits_for_migrations_in_flight(tmp_path: Path) -> None:
    pool = tiered_pool(disk_dir=str(tmp_path))
    blocks = pool.allocate(4)
    handle = pool.demote(blocks, Tier.DISK)
    pool.close()
    assert handle.done() and pool.num_free_blocks == 8


def test_consecutive_ids_are_copied_as_runs_in_either_order() -> None:
    def runs(pairs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
        return _runs([BlockMove(s, Tier.DEVICE, Tier.HOST, d) for s, d in pairs])

    assert runs([(4, 0), (5, 1), (6, 2), (9, 3), (10, 4)]) == [(4, 0, 3), (9, 3, 2)]
    assert runs([(6, 2), (5, 1), (4, 0)]) == [(4, 0, 3)]
    assert runs([(6, 2), (5, 1), (4, 0), (5, 3), (7, 9)]) == [(4, 0, 3), (5, 3, 1), (7, 9, 1)]
    assert runs([(1, 5), (2, 4)]) == [(1, 5, 1), (2, 4, 1)]  # opposite directions never merge


def test_runs_in_any_order_land_every_block_where_planned(pool: PagedKVPool) -> None:
    blocks = pool.allocate(6)
    data = {b: fill_random(pool, b) for b in blocks}
    targets = [5, 4, 3, 0, 1, 7]  # a descending run, an ascending run, a single block
    handle = pool.migrate(plan(*(BlockMove(b, Tier.DEVICE, Tier.HOST, t) for b, t in zip(blocks, targets))))
    handle.wait()
    for block, target in zip(blocks, targets):
        assert torch.equal(pool.block_data(target, Tier.HOST), data[block])


def test_a_freed_table_comes_back_in_its_order(pool: PagedKVPool) -> None:
    table = pool.allocate(4)
    pool.free(table)
    assert pool.allocate(4) == table


def test_tier_stats_counts_used_and_free_blocks_and_rates(pool: PagedKVPool) -> None:
    before = pool.tier_stats()
    assert [u.tier for u in before.tiers] == [Tier.DEVICE, Tier.HOST, Tier.DISK]
    assert before.migrations == () and before.rate(Tier.DEVICE, Tier.HOST).gb_per_s == 0.0
    blocks = pool.allocate(3)
    host = pool.swap_out(blocks[:2]).result().dst_block_ids
    stats = pool.tier_stats()
    assert (stats.usage(Tier.DEVICE).num_used_blocks, stats.usage(Tier.HOST).num_used_blocks) == (1, 2)
    assert stats.usage(Tier.HOST).num_free_blocks == stats.usage(Tier.HOST).num_blocks - 2
    to_host = stats.rate(Tier.DEVICE, Tier.HOST)
    assert to_host.num_bytes == 2 * pool.layout.bytes_per_block and to_host.seconds > 0
    assert stats.gb_per_s() == {"device->host": to_host.gb_per_s}
    assert stats.tiers == pool.stats().tiers  # the same figures stats() carries
    pool.free(host, Tier.HOST)
    pool.free(blocks[2:])


def test_tier_stats_rejects_a_tier_the_pool_lacks() -> None:
    with tiered_pool(host_blocks=4, disk_blocks=0) as pool:
        stats = pool.tier_stats()
    with pytest.raises(NotSupportedError, match="no disk tier"):
        stats.usage(Tier.DISK)
