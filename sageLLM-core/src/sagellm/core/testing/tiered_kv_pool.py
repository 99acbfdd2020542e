"""Conformance suite for :class:`sagellm.core.protocols.TieredKVPool` (and :class:`QuantizedKVPool`).

Everything :class:`KVPoolConformance` checks, plus what an engine's
preemption and prefix demotion rely on: every lower tier round-trips a
block's data, tickets name their destinations at once, blocks can be freed
in any tier, one plan can gather blocks from several tiers, and the tier
occupancy in ``stats()`` follows all of it. Pools with only a device tier
pass trivially; a quantized layout must come with scales.
"""

from __future__ import annotations

from sagellm.core.protocols import KVPool, MigrationTicket, QuantizedKVPool, TieredKVPool
from sagellm.core.testing.kv_pool import NUM_BLOCKS, KVPoolConformance
from sagellm.core.types import BlockId, BlockMove, MigrationPlan, Tier


class TieredKVPoolConformance(KVPoolConformance):
    """Inherit and implement :meth:`make_pool` (ideally once per tier configuration)."""

    def _tiered(self) -> TieredKVPool:
        pool = self._pool()
        assert isinstance(pool, TieredKVPool)
        return pool

    def _lower(self, pool: TieredKVPool) -> list[Tier]:
        return [tier for tier in pool.tiers if tier is not Tier.DEVICE]

    def _free_in(self, pool: KVPool, tier: Tier) -> int:
        return next(usage.num_free_blocks for usage in pool.stats().tiers if usage.tier is tier)

    def _mark(self, pool: KVPool, block: BlockId, value: float) -> None:
        key, val = pool.kv_tensors(0)
        key[block, 0, 0, 0] = value
        val[block, 0, 0, 0] = -value

    def _marked(self, pool: KVPool, block: BlockId) -> tuple[float, float]:
        key, val = pool.kv_tensors(0)
        return float(key[block, 0, 0, 0]), float(val[block, 0, 0, 0])

    def _move(self, pool: TieredKVPool, moves: list[BlockMove]) -> list[BlockId]:
        ticket = pool.migrate(MigrationPlan(tuple(moves)))
        assert isinstance(ticket, MigrationTicket)
        ids = list(ticket.dst_block_ids)
        assert len(ids) == len(moves)  # known at submission
        ticket.wait()
        assert ticket.done()
        return ids

    def test_tiers_start_with_the_device_fastest_first(self) -> None:
        pool = self._tiered()
        order = list(Tier)
        assert pool.tiers[0] is Tier.DEVICE
        assert [order.index(t) for t in pool.tiers] == sorted({order.index(t) for t in pool.tiers})
        assert {usage.tier for usage in pool.stats().tiers} in (set(), set(pool.tiers))

    def test_every_lower_tier_round_trips_a_block(self) -> None:
        pool = self._tiered()
        for lower in self._lower(pool):
            (block,) = pool.allocate(1)
            self._mark(pool, block, 5.0)
            free_below = self._free_in(pool, lower)
            (down,) = self._move(pool, [BlockMove(block, Tier.DEVICE, lower)])
            assert pool.num_free_blocks == NUM_BLOCKS and self._free_in(pool, lower) == free_below - 1
            (up,) = self._move(pool, [BlockMove(down, lower, Tier.DEVICE)])
            assert self._free_in(pool, lower) == free_below and pool.ref_count(up) == 1
            assert self._marked(pool, up) == (5.0, -5.0), f"data lost through {lower.value}"
            pool.free([up])

    def test_a_block_can_be_freed_in_a_lower_tier(self) -> None:
        pool = self._tiered()
        for lower in self._lower(pool):
            (block,) = pool.allocate(1)
            free_below = self._free_in(pool, lower)
            (down,) = self._move(pool, [BlockMove(block, Tier.DEVICE, lower)])
            pool.free([down], lower)
            assert self._free_in(pool, lower) == free_below
            assert pool.num_free_blocks == NUM_BLOCKS

    def test_one_plan_gathers_blocks_from_several_tiers(self) -> None:
        pool = self._tiered()
        lower = self._lower(pool)
        if not lower:
            return
        blocks = pool.allocate(len(lower) + 1)
        for value, block in enumerate(blocks, start=1):
            self._mark(pool, block, float(value))
        parked = [self._move(pool, [BlockMove(b, Tier.DEVICE, t)])[0] for b, t in zip(blocks[1:], lower, strict=True)]
        sources = [(blocks[0], Tier.DEVICE), *zip(parked, lower, strict=True)]
        landed = self._move(pool, [BlockMove(b, t, Tier.DEVICE) for b, t in sources if t is not Tier.DEVICE])
        got = [self._marked(pool, b) for b in [blocks[0], *landed]]
        assert got == [(float(v), -float(v)) for v in range(1, len(blocks) + 1)]

    def test_a_quantized_layout_comes_with_scales(self) -> None:
        pool = self._pool()
        if not pool.layout.is_quantized:
            assert not isinstance(pool, QuantizedKVPool) or pool.kv_scales(0) is None
            return
        assert isinstance(pool, QuantizedKVPool)
        scales = pool.kv_scales(0)
        assert scales is not None
        key_scales, value_scales = scales
        assert tuple(key_scales.shape) == (NUM_BLOCKS,) == tuple(value_scales.shape)
