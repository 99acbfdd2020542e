"""Per-sequence block tables: the sageLLM ``allocate_for_sequence`` API.

Kept apart from the pool so the pool stays a block allocator; this class
only remembers which blocks each sequence owns and how many token slots in
them hold KV, which is what the fragmentation figure needs::

    num_tokens = 10, block_size = 4  ->  ceil(10 / 4) = 3 blocks

    table:  [ b7          ][ b2          ][ b5          ]
            | t0 t1 t2 t3 || t4 t5 t6 t7 || t8 t9  .  . |
                                                  ^^^^^ 2 empty slots (internal fragmentation)

Growing to 13 tokens appends one block; the table never shrinks until
:meth:`release_sequence` frees it whole.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from sagellm.core.errors import KVBlockError
from sagellm.core.types import BlockId

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
        free: Callable[[Sequence[BlockId]], None],
    ) -> None:
        self._block_size = block_size
        self._allocate = allocate
        self._free = free
        self._tables: dict[SequenceId, list[BlockId]] = {}
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

    def release_sequence(self, seq_id: SequenceId) -> None:
        """Drop one reference on every block of ``seq_id`` and forget it."""
        table = self._table(seq_id)
        self._free(table)
        del self._tables[seq_id]
        self._num_used_tokens -= self._num_tokens.pop(seq_id)

    def _table(self, seq_id: SequenceId) -> list[BlockId]:
        try:
            return self._tables[seq_id]
        except KeyError:
            raise KVBlockError(f"unknown sequence {seq_id!r}: it has no blocks in this pool") from None
