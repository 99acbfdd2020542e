"""Per-sequence block tables: the sageLLM ``allocate_for_sequence`` API.

Kept apart from the pool so the pool stays a block allocator; this class
only remembers which blocks each sequence owns and how many token slots in
them hold KV, which is what the fragmentation figure needs::

    num_tokens = 10, block_size = 4  ->  ceil(10 / 4) = 3 blocks

    table:  [ b7          ][ b2          ][ b5          ]
            | t0 t1 t2 t3 || t4 t5 t6 t7 || t8 t9  .  . |
                                                  ^^^^^ 2 empty slots (internal fragmentation)

Growing to 13 tokens appends one block; the table never shrinks until
:meth:`release_sequence` frees it whole. A swapped-out sequence's table
holds its ids in the slower tier (:meth:`relocate`); it cannot grow there,
and its tokens leave ``num_used_tokens`` (a device figure) until it is
swapped back in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from sagellm.core.errors import KVBlockError
from sagellm.core.types import BlockId, Tier

SequenceId = Hashable
"""Usually the request id (``str``); any hashable works."""


def blocks_for_tokens(num_tokens: int, block_size: int) -> int:
    """Blocks needed to hold ``num_tokens`` token positions (ceil division)."""
    return -(-num_tokens // block_size)


class SequenceBlockTables:
    """Block table and token count of every live sequence, on top of a pool's allocate/free."""

    def __init__(
        self,
        block_size: int,
        allocate: Callable[[int], list[BlockId]],
        free: Callable[[Sequence[BlockId], Tier], None],
    ) -> None:
        self._block_size = block_size
        self._allocate = allocate
        self._free = free
        self._tables: dict[SequenceId, list[BlockId]] = {}
        self._swapped: dict[SequenceId, Tier] = {}  # sequences whose blocks are not on the device
        self._num_tokens: dict[SequenceId, int] = {}
        self._num_used_tokens = 0

    @property
    def num_used_tokens(self) -> int:
        """Token slots holding KV over all live sequences (feeds KVPoolStats)."""
        return self._num_used_tokens

    @property
    def num_sequences(self) -> int:
        return len(self._tables)

    def allocate_for_sequence(self, seq_id: SequenceId, num_tokens: int) -> list[BlockId]:
        """Grow ``seq_id``'s table to cover ``num_tokens`` tokens in total; return the whole table.

        Atomic: if the pool is short, OutOfBlocksError propagates and the
        table is unchanged. Asking for fewer tokens than already covered is a
        no-op (tables only grow).
        """
        if num_tokens < 0:
            raise KVBlockError(f"sequence {seq_id!r}: num_tokens must be >= 0 (got {num_tokens})")
        if seq_id in self._swapped:
            raise KVBlockError(
                f"sequence {seq_id!r} is swapped out to the {self._swapped[seq_id].value} tier; swap it in first"
            )
        table = self._tables.get(seq_id, [])
        missing = blocks_for_tokens(num_tokens, self._block_size) - len(table)
        if missing > 0:
            table = table + self._allocate(missing)  # raises before any state changes
        self._tables[seq_id] = table
        old_tokens = self._num_tokens.get(seq_id, 0)
        new_tokens = max(old_tokens, num_tokens)
        self._num_tokens[seq_id] = new_tokens
        self._num_used_tokens += new_tokens - old_tokens
        return list(table)

    def block_table(self, seq_id: SequenceId) -> list[BlockId]:
        """The blocks of ``seq_id`` in token order (a copy)."""
        return list(self._table(seq_id))

    def num_tokens(self, seq_id: SequenceId) -> int:
        self._table(seq_id)
        return self._num_tokens[seq_id]

    def tier(self, seq_id: SequenceId) -> Tier:
        """Where the sequence's blocks live now."""
        self._table(seq_id)
        return self._swapped.get(seq_id, Tier.DEVICE)

    def relocate(self, seq_id: SequenceId, block_ids: Sequence[BlockId], tier: Tier) -> None:
        """Record that the sequence's blocks now are ``block_ids`` in ``tier`` (after a swap)."""
        old_tier = self.tier(seq_id)
        if len(block_ids) != len(self._tables[seq_id]):
            raise KVBlockError(f"sequence {seq_id!r}: relocating {len(self._tables[seq_id])} blocks to {block_ids}")
        self._tables[seq_id] = list(block_ids)
        tokens = self._num_tokens[seq_id]
        if old_tier is Tier.DEVICE and tier is not Tier.DEVICE:
            self._num_used_tokens -= tokens
        elif old_tier is not Tier.DEVICE and tier is Tier.DEVICE:
            self._num_used_tokens += tokens
        if tier is Tier.DEVICE:
            self._swapped.pop(seq_id, None)
        else:
            self._swapped[seq_id] = tier

    def release_sequence(self, seq_id: SequenceId) -> None:
        """Drop one reference on every block of ``seq_id`` (in whichever tier it lives) and forget it."""
        table = self._table(seq_id)
        tier = self._swapped.get(seq_id, Tier.DEVICE)
        self._free(table, tier)
        del self._tables[seq_id]
        tokens = self._num_tokens.pop(seq_id)
        if self._swapped.pop(seq_id, None) is None:
            self._num_used_tokens -= tokens

    def _table(self, seq_id: SequenceId) -> list[BlockId]:
        try:
            return self._tables[seq_id]
        except KeyError:
            raise KVBlockError(f"unknown sequence {seq_id!r}: it has no blocks in this pool") from None
