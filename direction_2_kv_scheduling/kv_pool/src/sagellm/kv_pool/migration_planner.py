"""Book-keeping of a migration: reserve blocks before the copy, settle them after.

The copy itself runs later on a worker (see :mod:`sagellm.kv_pool.block_copier`);
this class makes sure no block it reads or writes is recycled meanwhile::

    reserve (caller's thread, pool lock held; all or nothing)
        move src:  pin the caller's reference          (the caller gives it up now)
        copy src:  add a reference and pin it          (the caller keeps its own)
        dst:       allocate (pool's choice or the plan's id) and pin
    complete (worker, pool lock held)
        src:       unpin + free    -> a moved block returns to its free list
        dst:       unpin           -> the caller now owns the new block
    abort (the copy raised)
        move src:  unpin           -> the caller keeps the source after all
        copy src:  unpin + free;   dst: unpin + free

Block metadata (prefix hash and depth, creation time, access history)
follows the block to its destination, so eviction policies and the prefix
index see a demoted block as the same block.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from sagellm.core.errors import OutOfBlocksError
from sagellm.core.types import BlockId, BlockMove, KVBlockMeta, MigrationPlan, Tier
from sagellm.kv_pool.tier_set import TierSet, coerce_tier


class MigrationPlanner:
    """Reserves and settles the blocks of migrations on a :class:`TierSet` (caller holds the pool lock)."""

    def __init__(self, tiers: TierSet) -> None:
        self._tiers = tiers

    def reserve(self, plan: MigrationPlan) -> tuple[BlockMove, ...]:
        """Validate the plan, take its destination blocks and pin its sources; the plan with every id filled in.

        Raises (NotSupportedError, KVBlockError, OutOfBlocksError) before changing anything.
        """
        moves = [_normalise(move) for move in plan.moves]
        self._check_sources(moves)
        explicit, automatic = self._check_destinations(moves)
        dst_ids = self._take_destinations(moves, explicit, automatic)
        resolved = tuple(
            BlockMove(move.block_id, move.src_tier, move.dst_tier, dst_id, move.keep_source)
            for move, dst_id in zip(moves, dst_ids)
        )
        for tier, ids in _sources(resolved, copies_only=True).items():
            self._tiers.get(tier).blocks.retain(ids)
        for tier, ids in _sources(resolved).items():
            self._tiers.get(tier).blocks.pin(ids)
        for tier, ids in _destinations(resolved).items():
            self._tiers.get(tier).blocks.pin(ids)
        for move in resolved:
            src_meta = self._tiers.get(move.src_tier).blocks.meta(move.block_id)
            _carry_meta(src_meta, self._tiers.get(move.dst_tier).blocks.meta(_dst(move)))
        return resolved

    def complete(self, moves: tuple[BlockMove, ...]) -> None:
        """The data has landed: free moved sources and extra copy references; hand destinations over."""
        for tier, ids in _sources(moves).items():
            blocks = self._tiers.get(tier).blocks
            blocks.unpin(ids)
            blocks.free(ids)
        for tier, ids in _destinations(moves).items():
            self._tiers.get(tier).blocks.unpin(ids)

    def abort(self, moves: tuple[BlockMove, ...]) -> None:
        """The copy failed: sources stay with the caller, destinations go back to their free lists."""
        for tier, ids in _sources(moves).items():
            self._tiers.get(tier).blocks.unpin(ids)
        for tier, ids in _sources(moves, copies_only=True).items():
            self._tiers.get(tier).blocks.free(ids)
        for tier, ids in _destinations(moves).items():
            blocks = self._tiers.get(tier).blocks
            blocks.unpin(ids)
            blocks.free(ids)

    def _check_sources(self, moves: list[BlockMove]) -> None:
        moved: dict[Tier, list[BlockId]] = defaultdict(list)
        copied: dict[Tier, list[BlockId]] = defaultdict(list)
        for move in moves:
            self._tiers.get(move.dst_tier)  # unknown / absent destination tiers fail here too
            (copied if move.keep_source else moved)[move.src_tier].append(move.block_id)
        for tier, ids in moved.items():
            self._tiers.get(tier).blocks.check_pinnable(ids)
        for tier, ids in copied.items():
            self._tiers.get(tier).blocks.check_pinnable(list(set(ids)))

    def _check_destinations(self, moves: list[BlockMove]) -> tuple[dict[Tier, list[BlockId]], Counter[Tier]]:
        explicit: dict[Tier, list[BlockId]] = defaultdict(list)
        automatic: Counter[Tier] = Counter()
        for move in moves:
            if move.dst_block_id is None:
                automatic[move.dst_tier] += 1
            else:
                explicit[move.dst_tier].append(move.dst_block_id)
        for tier in {*explicit, *automatic}:
            blocks = self._tiers.get(tier).blocks
            blocks.check_free_ids(explicit.get(tier, []))
            available = blocks.num_free - len(explicit.get(tier, []))
            if automatic[tier] > available:
                raise OutOfBlocksError(
                    f"cannot migrate {automatic[tier]} block(s) to the {tier.value} tier: "
                    f"only {available} of {blocks.num_blocks} are free"
                )
        return explicit, automatic

    def _take_destinations(
        self, moves: list[BlockMove], explicit: dict[Tier, list[BlockId]], automatic: Counter[Tier]
    ) -> list[BlockId]:
        chosen: dict[Tier, list[BlockId]] = {}
        for tier in {*explicit, *automatic}:
            slot = self._tiers.get(tier)
            fixed = slot.blocks.allocate_ids(explicit.get(tier, []))
            picked = slot.blocks.allocate(automatic[tier])
            slot.store.reset_scales(fixed + picked)
            chosen[tier] = picked
        picks = {tier: iter(ids) for tier, ids in chosen.items()}
        return [move.dst_block_id if move.dst_block_id is not None else next(picks[move.dst_tier]) for move in moves]


def _sources(moves: tuple[BlockMove, ...], copies_only: bool = False) -> dict[Tier, list[BlockId]]:
    """Source ids grouped by tier (one allocator call per tier, not per block)."""
    grouped: dict[Tier, list[BlockId]] = defaultdict(list)
    for move in moves:
        if move.keep_source or not copies_only:
            grouped[move.src_tier].append(move.block_id)
    return grouped


def _destinations(moves: tuple[BlockMove, ...]) -> dict[Tier, list[BlockId]]:
    grouped: dict[Tier, list[BlockId]] = defaultdict(list)
    for move in moves:
        grouped[move.dst_tier].append(_dst(move))
    return grouped


def _normalise(move: BlockMove) -> BlockMove:
    return BlockMove(
        move.block_id, coerce_tier(move.src_tier), coerce_tier(move.dst_tier), move.dst_block_id, move.keep_source
    )


def _dst(move: BlockMove) -> BlockId:
    assert move.dst_block_id is not None  # reserve() filled it in
    return move.dst_block_id


def _carry_meta(src: KVBlockMeta, dst: KVBlockMeta) -> None:
    dst.prefix_hash = src.prefix_hash
    dst.prefix_depth = src.prefix_depth
    dst.created_at = src.created_at
    dst.last_access = src.last_access
    dst.access_count = src.access_count
