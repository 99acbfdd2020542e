"""Coordinates the KV pool, the prefix index, the eviction policy and the pool's lower tiers.

The four are separate modules behind core Protocols; this class is the
only place that knows how their reference counts fit together:

* a sequence holds one pool reference on each block in its table;
* the prefix index holds one more pool reference on each block it caches,
  and counts the sequences using it (index references);
* a cached block nobody uses is *evictable*: it still occupies the pool,
  but the scheduler may count it as free, because ``ensure_free`` can take
  it off the device (and its last pool reference with it) on demand.

With lower tiers (``kv_pool.tiers: device,host[,disk]``) two things change:

* **eviction demotes**: an evicted cached block moves to the fastest lower
  tier with room (a full tier first pushes its oldest demoted blocks one
  tier down, or drops them at the bottom) and stays in the prefix index; a
  hit on it promotes it back. The index therefore keys entries by ids of
  its own, mapped to their current tier and block by
  :class:`~sagellm.engines.runtime.cache_entries.CacheEntries` (its
  docstring says why the ids cannot be device block ids);
* **preemption may swap**: :meth:`swap_out` moves a sequence's private
  blocks to the host tier and releases its cached ones to the cache;
  :meth:`admit` brings both back (see
  :mod:`~sagellm.engines.runtime.swapped_kv`).

Demoted blocks hold one pool reference in their tier (the index's) and no
sequence references: a sequence only ever references device blocks.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sagellm.core.errors import OutOfBlocksError
from sagellm.core.protocols import EvictionPolicy, KVPool, PrefixIndex
from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta, SequenceState, Tier, blocks_for
from sagellm.engines.runtime.cache_entries import CacheEntries, EntryId
from sagellm.engines.runtime.kv_tiers import KVTiers, TierCounters
from sagellm.engines.runtime.swapped_kv import SwappedKV


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`KVManager.admit` gave a sequence before its first chunk."""

    num_hit_tokens: int  # from the prefix cache (promoted blocks included)
    num_promoted_blocks: int = 0
    num_swapped_in_blocks: int = 0


@dataclass(slots=True)
class PinnedBlocks:
    """Device blocks of a cached prefix, held for a hand-off until :meth:`KVManager.unpin`."""

    block_ids: list[BlockId]  # in prefix order, one pool reference each (until unpinned)
    entries: list[EntryId]  # the index references held with them
    unpinned: bool = False


@dataclass(frozen=True, slots=True)
class _Restore:
    """What an admission brings back: hit entries (``lower`` of them to promote), a swapped run, the KV extent."""

    entries: list[EntryId]
    lower: list[EntryId]
    run: list[int]
    computed: int


class KVManager:
    def __init__(self, pool: KVPool, index: PrefixIndex | None, policy: EvictionPolicy | None) -> None:
        self.pool = pool
        self.index = index
        self.policy = policy
        self.block_size = pool.layout.block_size
        self.counters = TierCounters()
        self.tiers = KVTiers(pool, self.counters)
        self.entries = CacheEntries()
        self._evictable: set[EntryId] = set()  # device-resident cached entries no sequence uses
        self._cached_by_seq: dict[str, list[EntryId]] = {}  # entries a sequence holds index refs on
        self._registered: dict[str, int] = {}  # full blocks already offered to the index
        self._meta: dict[EntryId, KVBlockMeta] = {}  # cached entries, for cost-aware policies (depth, age, hits)
        self._swapped: dict[str, SwappedKV] = {}
        self.num_evictions = 0  # cached blocks taken off the device (dropped or demoted)
        self.num_hit_tokens = 0
        self.num_queried_tokens = 0

    @property
    def num_free_blocks(self) -> int:
        """Free plus evictable device blocks: what the scheduler may plan with."""
        return self.pool.num_free_blocks + len(self._evictable)

    @property
    def prefix_caching(self) -> bool:
        return self.index is not None

    @property
    def can_swap(self) -> bool:
        return self.tiers.has(Tier.HOST)

    def is_swapped(self, seq: SequenceState) -> bool:
        return seq.request_id in self._swapped

    def peek_cached_tokens(self, seq: SequenceState) -> int:
        """Tokens admission would supply without compute: the cached prefix, plus swapped KV after it."""
        hit = 0 if self.index is None else self.index.peek(self._lookup_tokens(seq), seq.request.namespace)
        swapped = self._swapped.get(seq.request_id)
        return hit if swapped is None else swapped.restorable_tokens(hit // self.block_size, self.block_size)

    # ------------------------------------------------------------------ prices, for the scheduler
    def admission_blocks(self, seq: SequenceState, num_new_tokens: int) -> int:
        """Free-or-evictable device blocks admitting ``seq`` with a first chunk of ``num_new_tokens`` takes.

        The chunk's new blocks, plus one per lower-tier hit block (promoted),
        per swapped-out block after the hit (swapped in) and per hit block
        now evictable (pinned: no longer counted free). What :meth:`admit`
        then does within that room; nothing is held afterwards.
        """
        entries = self._lookup(seq)
        try:
            moved = sum(1 for e in entries if self.entries.device_block(e) is None)
            pinned = sum(1 for e in entries if e in self._evictable)
            swapped = self._swapped.get(seq.request_id)
            run = swapped.run_after(len(entries)) if swapped is not None else []
            computed = self._restorable_tokens(len(entries), swapped)
            held = len(entries) + len(run)
            return moved + pinned + len(run) + self._chunk_blocks(seq, computed, held, num_new_tokens)
        finally:
            self._release_entries(entries)

    def preemption_blocks(self, seq: SequenceState) -> int:
        """Device blocks preempting running ``seq`` frees or makes evictable: those no other sequence uses."""
        cached_alone = 2  # the index's reference and this sequence's
        return sum(
            1
            for block in seq.block_ids
            if self.pool.ref_count(block) == (1 if self.entries.entry_at(block) is None else cached_alone)
        )

    # ------------------------------------------------------------------ admission
    def admit(self, seq: SequenceState, num_new_tokens: int) -> Admission | None:
        """Put a waiting sequence's cached prefix and swapped-out KV on the device before its first chunk.

        Demoted hit blocks are promoted and swapped blocks swapped in when
        the device can hold them *and* the first ``num_new_tokens`` after
        them. Otherwise the hit is cut where promotions stop fitting; the
        lower-tier blocks after the cut count as misses (recomputed; they
        stay cached below). None when not even the first chunk fits, or a
        cut would recompute swapped KV: nothing has changed and the
        sequence keeps waiting (its swapped KV stays on the host).
        """
        seq.num_cached_tokens = 0
        swapped = self._swapped.get(seq.request_id)
        restore = self._plan_restore(seq, self._lookup(seq), swapped, num_new_tokens)
        if restore is None:
            return None
        blocks = self._bring_to_device(restore, swapped)
        if swapped is not None:
            self._finish_swap_in(seq, swapped, restore.run)
        num_hit = len(restore.entries) * self.block_size
        if self.index is not None:
            self.num_queried_tokens += len(self._lookup_tokens(seq))
            self.num_hit_tokens += num_hit
        seq.block_ids = blocks
        seq.num_computed_tokens = restore.computed
        seq.num_cached_tokens = num_hit
        self._cached_by_seq[seq.request_id] = list(restore.entries)
        self._registered[seq.request_id] = len(restore.entries)
        return Admission(num_hit, len(restore.lower), len(restore.run))

    def allocate_for(self, seq: SequenceState, num_tokens: int) -> None:
        """Grow the block table to hold ``num_tokens`` KV slots; raise OutOfBlocksError if impossible."""
        needed = blocks_for(num_tokens, self.block_size) - len(seq.block_ids)
        if needed <= 0:
            self._unshare_tail(seq)
            return
        self.ensure_free(needed)
        self._unshare_tail(seq)
        seq.block_ids.extend(self.pool.allocate(needed))

    def truncate(self, seq: SequenceState, num_tokens: int) -> int:
        """Free the blocks past the first ``num_tokens`` KV slots (rejected drafts' KV); returns how many.

        Only blocks after the computed KV go: none of them was offered to the
        prefix index (it adopts computed, verified blocks only), so they are
        private to the sequence.
        """
        keep = max(blocks_for(num_tokens, self.block_size), self._registered.get(seq.request_id, 0))
        surplus = seq.block_ids[keep:]
        if surplus:
            self.pool.free(surplus)
            del seq.block_ids[keep:]
        return len(surplus)

    def ensure_free(self, num_blocks: int) -> None:
        """Evict (demote, or drop) cached blocks until ``num_blocks`` device blocks are free."""
        shortfall = num_blocks - self.pool.num_free_blocks
        if shortfall <= 0:
            return
        if shortfall > len(self._evictable) or self.index is None or self.policy is None:
            raise OutOfBlocksError(
                f"need {num_blocks} KV blocks, {self.pool.num_free_blocks} free and {len(self._evictable)} evictable"
            )
        victims = self.policy.select_victims(
            EvictionContext(
                num_blocks=shortfall,
                now=time.monotonic(),
                is_evictable=self._evictable.__contains__,
                block_meta=self._meta.get,
            )
        )
        self._evict(victims)
        if self.pool.num_free_blocks < num_blocks:
            raise OutOfBlocksError(f"eviction freed too little: need {num_blocks}, have {self.pool.num_free_blocks}")

    def register_computed(self, seq: SequenceState) -> None:
        """Offer newly completed full blocks of computed KV to the prefix index."""
        if self.index is None:
            return
        num_full = seq.num_computed_tokens // self.block_size
        if num_full <= self._registered.get(seq.request_id, 0):
            return
        tokens = seq.token_ids[: num_full * self.block_size]
        adopted = self._offer(tokens, seq.block_ids[:num_full], seq.request.namespace, seq.num_prompt_tokens)
        self._cached_by_seq.setdefault(seq.request_id, []).extend(adopted)
        self._registered[seq.request_id] = num_full

    # ------------------------------------------------------------------ hand-off (disaggregation)
    def pin_prefix(self, tokens: Sequence[int], namespace: str) -> PinnedBlocks:
        """Reference the device blocks caching ``tokens``' full blocks until :meth:`unpin`.

        A leading part of them, or none: blocks evicted meanwhile, or
        demoted to a lower tier, end the run (the receiver computes the rest).
        """
        if self.index is None:
            return PinnedBlocks([], [])
        full = len(tokens) // self.block_size * self.block_size
        entries = list(self.index.lookup(tokens[:full], namespace).block_ids)
        on_device = next((i for i, e in enumerate(entries) if self.entries.device_block(e) is None), len(entries))
        self._release_entries(entries[on_device:])
        kept = entries[:on_device]
        self._hold(kept, len(tokens))
        return PinnedBlocks([self.entries.location(e)[1] for e in kept], kept)

    def adopt_prefix(self, tokens: Sequence[int], namespace: str, block_ids: Sequence[BlockId]) -> PinnedBlocks:
        """Cache ``block_ids`` (allocated here, filled elsewhere with ``tokens``' full blocks), pinned until :meth:`unpin`.

        Exactly how a prompt computed here is cached; blocks whose prefix
        was cached already are not adopted (``unpin`` frees them).
        """
        blocks = list(block_ids)
        if self.index is None:
            return PinnedBlocks(blocks, [])
        adopted = self._offer(tokens[: len(blocks) * self.block_size], blocks, namespace, len(tokens))
        return PinnedBlocks(blocks, adopted)

    def unpin(self, pinned: PinnedBlocks) -> None:
        """Let go of a pin (cached blocks stay cached, evictable once nobody else uses them); twice is harmless."""
        if pinned.unpinned:
            return
        pinned.unpinned = True
        self._release_entries(pinned.entries)
        self.pool.free(pinned.block_ids)

    def _offer(
        self, tokens: Sequence[int], blocks: Sequence[BlockId], namespace: str, request_tokens: int
    ) -> list[EntryId]:
        """Insert full ``blocks`` holding ``tokens`` into the index; the entries adopted (their index refs are the caller's)."""
        assert self.index is not None
        ids: list[EntryId] = []
        fresh: dict[EntryId, int] = {}  # offered ids -> block position, for blocks not cached yet
        for position, block in enumerate(blocks):
            entry = self.entries.entry_at(block)
            if entry is None:
                entry = self.entries.mint()
                fresh[entry] = position
            ids.append(entry)
        adopted = self.index.insert(tokens, ids, namespace)
        self.pool.retain([blocks[fresh[entry]] for entry in adopted])  # the index's own reference
        now = time.monotonic()
        size = self.pool.layout.bytes_per_block
        for entry in adopted:
            self.entries.add(entry, blocks[fresh[entry]])
            self._meta[entry] = KVBlockMeta(
                entry,
                size_bytes=size,
                created_at=now,
                last_access=now,
                prefix_depth=fresh[entry],
                request_tokens=request_tokens,
            )
            if self.policy is not None:
                self.policy.on_insert(entry, now)
        return adopted

    def release(self, seq: SequenceState) -> None:
        """Give back everything a finished, aborted or (recompute-)preempted sequence holds, swapped KV included."""
        self._release_device(seq)
        swapped = self._swapped.pop(seq.request_id, None)
        if swapped is not None:
            self.tiers.free(list(swapped.host_blocks.values()), Tier.HOST)

    def swap_out(self, seq: SequenceState) -> int | None:
        """Preempt by swapping: private device blocks to the host tier, cached ones released to the cache.

        Returns the number of blocks moved: 0 when every block is cached
        (all released to the cache, as a recompute preemption would: nothing
        is lost). None when there is no host tier or no room there, even
        after pushing demoted prefix blocks down or out (a running
        sequence's KV is worth more than a cached prefix): nothing changed,
        and the caller recomputes.
        """
        if not self.can_swap:
            return None
        positions = [i for i, block in enumerate(seq.block_ids) if self.entries.entry_at(block) is None]
        if not positions:
            self.release(seq)
            return 0
        if not self._make_room(Tier.HOST, len(positions)):
            return None
        host_blocks = self.tiers.move([seq.block_ids[i] for i in positions], Tier.DEVICE, Tier.HOST)
        self._swapped[seq.request_id] = SwappedKV(seq.num_computed_tokens, dict(zip(positions, host_blocks)))
        moved = set(positions)
        seq.block_ids = [block for i, block in enumerate(seq.block_ids) if i not in moved]
        self._release_device(seq)
        self.counters.swap_out += 1
        self.counters.swap_out_blocks += len(positions)
        self.counters.swap_out_bytes += len(positions) * self.tiers.bytes_per_block
        return len(positions)

    def hit_rate(self) -> float:
        return self.num_hit_tokens / self.num_queried_tokens if self.num_queried_tokens else 0.0

    # ------------------------------------------------------------------ admission parts
    def _lookup(self, seq: SequenceState) -> list[EntryId]:
        if self.index is None:
            return []
        return list(self.index.lookup(self._lookup_tokens(seq), seq.request.namespace).block_ids)

    def _plan_restore(
        self, seq: SequenceState, entries: list[EntryId], swapped: SwappedKV | None, num_new_tokens: int
    ) -> _Restore | None:
        """Decide what comes back to the device; hold it (and make room for it), or let go of it all.

        The whole hit and the swapped run, if the device holds them and the
        first chunk after them. Else, unless swapped KV would continue the
        hit (then None: recomputing a prefix the host holds, only to be
        preempted again half-way, is how a full device thrashes), the
        longest part of the hit whose promotions fit with the chunk; the
        rest of the hit is let go and its lower-tier blocks count as misses
        (they stay cached below). Else None, every reference let go. Room
        is free + evictable blocks, the whole device when nothing runs, so
        a request that fits the pool is always admitted eventually.
        """
        self._hold(entries, seq.num_prompt_tokens)
        is_lower = [self.entries.device_block(e) is None for e in entries]
        run = swapped.run_after(len(entries)) if swapped is not None else []
        computed = self._restorable_tokens(len(entries), swapped)
        moves = sum(is_lower) + len(run)
        need = moves + self._chunk_blocks(seq, computed, len(entries) + len(run), num_new_tokens)
        if need <= self.num_free_blocks and self._try_ensure_free(moves):
            return _Restore(entries, [e for e, low in zip(entries, is_lower) if low], run, computed)
        first_lower = is_lower.index(True) if any(is_lower) else len(entries)
        if run or (swapped is not None and swapped.run_after(first_lower)):
            self._let_go(entries)
            return None
        for kept in range(len(entries) - 1, first_lower - 1, -1):
            self._let_go(entries[kept : kept + 1])  # one at a time: each may free a block for the rest
            promotions = sum(is_lower[:kept])
            chunk = self._chunk_blocks(seq, kept * self.block_size, kept, num_new_tokens)
            if promotions + chunk <= self.num_free_blocks and self._try_ensure_free(promotions):
                self.counters.kv_promotion_missed_blocks += sum(is_lower[kept:])
                lower = [e for e, low in zip(entries[:kept], is_lower) if low]
                return _Restore(entries[:kept], lower, [], kept * self.block_size)
        self._let_go(entries[:first_lower])
        return None

    def _restorable_tokens(self, num_hit_blocks: int, swapped: SwappedKV | None) -> int:
        """Tokens a hit of ``num_hit_blocks`` (plus swapped KV continuing it) puts back without compute."""
        if swapped is None:
            return num_hit_blocks * self.block_size
        return swapped.restorable_tokens(num_hit_blocks, self.block_size)

    def _hold(self, entries: list[EntryId], request_tokens: int) -> None:
        """A sequence's pool references on the device-resident hit entries; none of them is evictable now."""
        now = time.monotonic()
        device = []
        for entry in entries:
            self._policy_access(entry, now)
            self._touch(entry, now, request_tokens)
            block = self.entries.device_block(entry)
            if block is not None:
                device.append(block)
        self.pool.retain(device)
        self._evictable.difference_update(entries)

    def _let_go(self, entries: list[EntryId]) -> None:
        """Undo :meth:`_lookup` and :meth:`_hold` for ``entries``."""
        device = [b for b in (self.entries.device_block(e) for e in entries) if b is not None]
        self._release_entries(entries)
        self.pool.free(device)

    def _try_ensure_free(self, num_blocks: int) -> bool:
        try:
            self.ensure_free(num_blocks)
        except OutOfBlocksError:
            return False
        return True

    def _chunk_blocks(self, seq: SequenceState, computed: int, num_held: int, num_new_tokens: int) -> int:
        """Blocks a first chunk of up to ``num_new_tokens`` after ``computed`` adds to ``num_held`` blocks."""
        end = computed + max(1, min(num_new_tokens, seq.num_tokens - computed))
        return max(0, blocks_for(end, self.block_size) - num_held)

    def _bring_to_device(self, restore: _Restore, swapped: SwappedKV | None) -> list[BlockId]:
        """Promote the lower-tier hit entries and swap in the run, in one migration; the new block table."""
        sources = [(block, tier) for tier, block in map(self.entries.location, restore.lower)]
        if swapped is not None:
            sources += [(swapped.host_blocks[p], Tier.HOST) for p in restore.run]
        arrived = iter(self.tiers.move_mixed(sources, Tier.DEVICE))
        now = time.monotonic()
        table = []
        for entry in restore.entries:
            block = self.entries.device_block(entry)
            if block is None:  # promoted: the index's reference moved with it; the sequence adds its own
                block = next(arrived)
                self.entries.relocate(entry, Tier.DEVICE, block)
                self.pool.retain([block])
                if self.policy is not None:
                    self.policy.on_insert(entry, now)
            table.append(block)
        self.counters.kv_promoted_blocks += len(restore.lower)
        return table + list(arrived)

    def _finish_swap_in(self, seq: SequenceState, swapped: SwappedKV, run: list[int]) -> None:
        del self._swapped[seq.request_id]
        unused = swapped.unused(run)
        self.tiers.free(unused, Tier.HOST)
        self.counters.swap_discarded_blocks += len(unused)
        if run:
            self.counters.swap_in += 1
            self.counters.swap_in_blocks += len(run)
            self.counters.swap_in_bytes += len(run) * self.tiers.bytes_per_block

    # ------------------------------------------------------------------ releasing and evicting
    def _release_device(self, seq: SequenceState) -> None:
        """Index references and device blocks of a sequence (its swapped KV, if any, stays)."""
        self._release_entries(self._cached_by_seq.pop(seq.request_id, []))
        self._registered.pop(seq.request_id, None)
        self.pool.free(seq.block_ids)
        seq.block_ids = []
        seq.num_computed_tokens = 0

    def _release_entries(self, entries: Sequence[EntryId]) -> None:
        if self.index is None or not entries:
            return
        self.index.release(entries)
        self._evictable.update(
            e for e in entries if self.entries.device_block(e) is not None and self.index.is_evictable(e)
        )

    def _evict(self, victims: list[EntryId]) -> None:
        """Take evictable entries off the device: demoted if a lower tier has room, else dropped."""
        assert self.index is not None
        for entry in victims:
            self._evictable.discard(entry)
            if self.policy is not None:
                self.policy.on_remove(entry)
        self.num_evictions += len(victims)
        blocks = [self.entries.location(e)[1] for e in victims]
        target = next((tier for tier in self.tiers.lower if self._make_room(tier, len(victims))), None)
        if target is None:
            self._drop(victims)
            self.pool.free(blocks)
            return
        for entry, block in zip(victims, self.tiers.move(blocks, Tier.DEVICE, target)):
            self.entries.relocate(entry, target, block)
        self.counters.kv_demoted_blocks += len(victims)

    def _make_room(self, tier: Tier, num_blocks: int) -> bool:
        """Free ``num_blocks`` of a lower tier by pushing its oldest demoted entries down (or out at the bottom)."""
        shortfall = num_blocks - self.tiers.num_free(tier)
        if shortfall <= 0:
            return True
        if self.index is None:
            return False
        index = self.index
        oldest = list(itertools.islice((e for e in self.entries.oldest(tier) if index.is_evictable(e)), shortfall))
        if len(oldest) < shortfall:
            return False
        blocks = [self.entries.location(e)[1] for e in oldest]
        below = self.tiers.below(tier)
        if below is not None and self._make_room(below, shortfall):
            for entry, block in zip(oldest, self.tiers.move(blocks, tier, below)):
                self.entries.relocate(entry, below, block)
        else:
            self._drop(oldest)
            self.tiers.free(blocks, tier)
            self.counters.kv_lower_dropped_blocks += len(oldest)
        return True

    def _drop(self, entries: list[EntryId]) -> None:
        """Forget entries in the index and here; the caller frees their blocks."""
        assert self.index is not None
        self.index.remove(entries)
        for entry in entries:
            self.entries.forget(entry)
            self._meta.pop(entry, None)

    # ------------------------------------------------------------------ small helpers
    def _touch(self, entry: EntryId, now: float, request_tokens: int) -> None:
        """A cache hit: the block's age, hit count and the prompt length of the request reusing it (predictors' features)."""
        meta = self._meta.get(entry)
        if meta is not None:
            meta.last_access = now
            meta.access_count += 1
            meta.request_tokens = request_tokens

    def _policy_access(self, entry: EntryId, now: float) -> None:
        if self.policy is not None and self.entries.device_block(entry) is not None:
            self.policy.on_access(entry, now)

    def _lookup_tokens(self, seq: SequenceState) -> list[int]:
        """All but the last token: at least one token must run to produce logits."""
        return seq.token_ids[: seq.num_tokens - 1]

    def _unshare_tail(self, seq: SequenceState) -> None:
        """The next token is written into the last block; it must be private."""
        if seq.num_computed_tokens % self.block_size == 0 or not seq.block_ids:
            return
        index = seq.num_computed_tokens // self.block_size
        if index < len(seq.block_ids) and self.pool.ref_count(seq.block_ids[index]) > 1:
            seq.block_ids[index] = self.pool.copy_on_write(seq.block_ids[index])
