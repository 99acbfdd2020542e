"""Which blocks are free, who holds the others, and when they were touched.

The free list is a plain Python list used as a stack: ``allocate(n)`` slices
``n`` ids off the end and ``free`` appends, so both cost O(n) in the blocks
moved and nothing in the pool size — unlike ``list.remove`` (O(pool)) or a
set (hashing per id, no reuse order). The most recently freed block is handed
out first, which keeps a small working set hot in the device caches::

    free stack (top on the right):   [7 6 5 4 3 | 2 1 0]
                                                 ^^^^^ allocate(3) -> [0, 1, 2]
    free([1])                  ->    [7 6 5 4 3 1]
    free([0, 2])               ->    [7 6 5 4 3 1 2 0]   (reversed: allocate(2) -> [0, 2] again)

Reference counts live in the :class:`KVBlockMeta` records themselves, so the
record an eviction policy reads is never out of date with the pool.
Validation runs before any mutation: a call that raises changes nothing.

Pins are references owned by a migration in flight. A move pins the caller's
source reference (the caller gave it up; the block must not return to the
free list while the copy still reads it), and every destination block is
pinned until its data has landed. ``free`` refuses to drop a pinned
reference, so a caller cannot recycle a block a copy engine is still using::

    move 3 -> host:  device 3: ref 1, pins 1   (free([3]) -> KVBlockError)
    copy done:       unpin + free -> device 3 back on the free stack
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from sagellm.core.errors import KVBlockError, OutOfBlocksError
from sagellm.core.types import BlockId, KVBlockMeta, Tier


class BlockAllocator:
    """Free stack, reference counts and :class:`KVBlockMeta` of one tier's blocks."""

    def __init__(
        self,
        num_blocks: int,
        bytes_per_block: int,
        tier: Tier = Tier.DEVICE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free: list[BlockId] = list(range(num_blocks - 1, -1, -1))  # low ids on top
        self._meta = [KVBlockMeta(block_id=b, tier=tier, size_bytes=bytes_per_block) for b in range(num_blocks)]
        self._num_shared = 0
        self._pins: dict[BlockId, int] = {}  # references owned by migrations in flight
        self._clock = clock

    @property
    def num_blocks(self) -> int:
        return len(self._meta)

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return len(self._meta) - len(self._free)

    @property
    def num_shared(self) -> int:
        """Blocks held by more than one owner (kept incrementally: stats stay O(1))."""
        return self._num_shared

    def allocate(self, num_blocks: int) -> list[BlockId]:
        """Take ``num_blocks`` free blocks at reference 1, or raise and take none."""
        if num_blocks <= 0:
            if num_blocks == 0:
                return []
            raise KVBlockError(f"cannot allocate a negative number of blocks ({num_blocks})")
        if num_blocks > len(self._free):
            raise OutOfBlocksError(
                f"cannot allocate {num_blocks} KV blocks: only {len(self._free)} of {len(self._meta)} are free"
            )
        block_ids = self._free[-num_blocks:]
        del self._free[-num_blocks:]
        block_ids.reverse()
        self._start_records(block_ids)
        return block_ids

    def allocate_ids(self, block_ids: Sequence[BlockId]) -> list[BlockId]:
        """Take these particular free blocks at reference 1 (a migration with chosen destinations).

        O(free blocks) per call, not per id: the free stack is rebuilt once.
        Rare (the pool picks destinations unless told otherwise), so the
        allocate hot path keeps its plain stack.
        """
        wanted = list(block_ids)
        if not wanted:
            return []
        self.check_free_ids(wanted)
        taken = set(wanted)
        self._free = [b for b in self._free if b not in taken]
        self._start_records(wanted)
        return wanted

    def check_free_ids(self, block_ids: Sequence[BlockId]) -> None:
        """Raise unless every id is a known, free block and none repeats."""
        if len(set(block_ids)) != len(block_ids):
            raise KVBlockError(f"destination KV block ids repeat: {list(block_ids)}")
        for block_id in block_ids:
            if self.meta(block_id).ref_count != 0:
                raise KVBlockError(f"cannot take KV block {block_id}: it is already allocated")

    def _start_records(self, block_ids: Sequence[BlockId]) -> None:
        now = self._clock()
        meta = self._meta
        for block_id in block_ids:
            record = meta[block_id]
            record.ref_count = 1
            record.created_at = record.last_access = now
            record.access_count = 1
            record.prefix_hash = None
            record.prefix_depth = 0

    def retain(self, block_ids: Sequence[BlockId]) -> None:
        """Add one reference per id (an id listed twice gains two)."""
        self._check_live(block_ids)
        now = self._clock()
        for block_id in block_ids:
            record = self._meta[block_id]
            record.ref_count += 1
            if record.ref_count == 2:
                self._num_shared += 1
            record.last_access = now
            record.access_count += 1

    def free(self, block_ids: Sequence[BlockId]) -> None:
        """Drop one reference per id; a block whose last reference goes returns to the free stack.

        Pushed in reverse, so the next allocation of that many blocks gets
        them back in the order they were freed: a freed table [4 5 6] comes
        back as [4 5 6], not [6 5 4], and stays one run for migration copies.
        """
        self._check_live(block_ids, dropping=True)
        meta, free_ids = self._meta, self._free
        for block_id in reversed(block_ids):
            record = meta[block_id]
            record.ref_count -= 1
            if record.ref_count == 0:
                free_ids.append(block_id)
            elif record.ref_count == 1:
                self._num_shared -= 1

    def pin(self, block_ids: Sequence[BlockId]) -> None:
        """Hand one existing reference per id to a migration (see the module docstring)."""
        self.check_pinnable(block_ids)
        pins = self._pins
        for block_id in block_ids:
            pins[block_id] = pins.get(block_id, 0) + 1

    def check_pinnable(self, block_ids: Sequence[BlockId]) -> None:
        """Raise unless each id is allocated and holds a reference per listing that no migration owns."""
        self._check_live(block_ids)
        self._check_unpinned_refs(block_ids, "migrate")

    def unpin(self, block_ids: Sequence[BlockId]) -> None:
        """Give the migration's references back (to the caller, or to ``free`` right after)."""
        pins = self._pins
        for block_id in block_ids:
            left = pins[block_id] - 1
            if left:
                pins[block_id] = left
            else:
                del pins[block_id]

    def num_pins(self, block_id: BlockId) -> int:
        return self._pins.get(block_id, 0)

    def touch(self, block_ids: Sequence[BlockId]) -> None:
        """Record an access (a read by attention, a prefix hit) for recency/frequency policies."""
        self._check_live(block_ids)
        now = self._clock()
        for block_id in block_ids:
            record = self._meta[block_id]
            record.last_access = now
            record.access_count += 1

    def ref_count(self, block_id: BlockId) -> int:
        return self.meta(block_id).ref_count

    def meta(self, block_id: BlockId) -> KVBlockMeta:
        """The live record (not a copy): policies see every later touch."""
        if not 0 <= block_id < len(self._meta):
            raise KVBlockError(f"unknown KV block id {block_id} (pool has blocks 0..{len(self._meta) - 1})")
        return self._meta[block_id]

    def _check_live(self, block_ids: Sequence[BlockId], dropping: bool = False) -> None:
        """Raise unless every id is allocated (and, when dropping, holds enough references).

        Inlined range and ref checks: this runs on every free and retain.
        """
        meta = self._meta
        num_blocks = len(meta)
        for block_id in block_ids:
            if not 0 <= block_id < num_blocks or meta[block_id].ref_count == 0:
                self._raise_not_live(block_id, dropping)
        if dropping and len(block_ids) > 1 and len(set(block_ids)) != len(block_ids):
            for block_id, count in Counter(block_ids).items():
                if count > meta[block_id].ref_count:
                    raise KVBlockError(
                        f"cannot free KV block {block_id} {count} times: it holds only "
                        f"{meta[block_id].ref_count} reference(s) (double free?)"
                    )
        if dropping and self._pins:
            self._check_unpinned_refs(block_ids, "free")

    def _check_unpinned_refs(self, block_ids: Sequence[BlockId], verb: str) -> None:
        """Raise unless each id holds, outside migrations in flight, a reference per listing."""
        pins, meta = self._pins, self._meta
        for block_id, count in Counter(block_ids).items():
            pinned = pins.get(block_id, 0)
            if count > meta[block_id].ref_count - pinned:
                if not pinned:
                    raise KVBlockError(
                        f"cannot {verb} KV block {block_id} {count} times: it holds only "
                        f"{meta[block_id].ref_count} reference(s)"
                    )
                raise KVBlockError(
                    f"cannot {verb} KV block {block_id}: {pinned} of its {meta[block_id].ref_count} "
                    "reference(s) belong to a migration in flight (wait for its handle first)"
                )

    def _raise_not_live(self, block_id: BlockId, dropping: bool) -> None:
        self.meta(block_id)  # raises for an unknown id
        verb, hint = ("free", " (double free?)") if dropping else ("use", "")
        raise KVBlockError(f"cannot {verb} KV block {block_id}: it is not allocated{hint}")
