"""The reference-counting half of a prefix index, written once for every structure.

A prefix index has two jobs that do not depend on each other:

* *find* the cached blocks of a token prefix (a hash chain, a radix tree);
* *own* them: count who uses each block, say which are evictable, forget
  them on request, keep the counters the engine's metrics read.

This module is the second job. :class:`RefCountedIndex` keeps the
``block_id -> block`` table, the reference counts, the evictable count and
the statistics, and implements everything of
:class:`~sagellm.core.protocols.PrefixIndex` that only touches them. A
subclass supplies the structure through four hooks (``_match``,
``_insert_blocks``, ``_unlink``, ``_depth``), so a second index cannot drift
from the first in how it counts, which is what the equivalence tests check.

One lock guards every call: the server thread may ``peek`` or ``lookup``
while the engine thread inserts; matching is pure Python under the GIL, so
a finer lock would not buy parallelism.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError, InvalidRequestError, KVBlockError
from sagellm.core.types import BlockId, KVBlockMeta, PrefixHit
from sagellm.prefix_cache.hashing import TOKEN_BYTES, pack_tokens
from sagellm.prefix_cache.stats import PrefixCacheStats


class RefCountedBlock(Protocol):
    """What the base needs of a structure's block: its id and its users."""

    block_id: BlockId
    ref_count: int


BlockT = TypeVar("BlockT", bound=RefCountedBlock)
IndexT = TypeVar("IndexT", bound="RefCountedIndex[Any]")


class RefCountedIndex(ABC, Generic[BlockT]):
    """Reference counts, eviction bookkeeping and statistics of a prefix index.

    Ownership (the :class:`~sagellm.core.protocols.PrefixIndex` contract):
    ``lookup`` takes a reference on each matched block, ``insert`` adopts
    uncached blocks with reference 1 and returns their ids, ``release`` gives
    references back, a block with none is evictable, ``remove`` forgets
    evictable blocks. Misuse (unknown ids, releasing more than was taken,
    removing a block in use) raises :class:`~sagellm.core.errors.KVBlockError`
    and changes nothing.

    The evictable count is kept up to date on every transition instead of
    being counted on demand, so ``stats()`` costs the same on a full cache
    as on an empty one.
    """

    implementation: ClassVar[str]  # the entry-point name, used in config errors

    def __init__(self, block_size: int = 16) -> None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size must be a positive int, got {block_size!r}")
        self._block_size = block_size
        self._stride = block_size * TOKEN_BYTES
        self._lock = threading.Lock()
        self._by_id: dict[BlockId, BlockT] = {}
        self._num_evictable = 0
        self._num_lookups = 0
        self._num_queried_tokens = 0
        self._num_hit_tokens = 0
        self._num_inserted = 0
        self._num_collisions = 0

    @classmethod
    def from_config(cls: type[IndexT], section: Section, *, block_size: int) -> IndexT:
        """Build from the ``prefix_cache`` section; ``block_size`` comes from the KV pool."""
        options: dict[str, Any] = dict(section.options)
        if options:
            raise ConfigError(f"prefix_cache.options: {cls.implementation} takes no options, got {sorted(options)}")
        return cls(block_size=block_size)

    @property
    def block_size(self) -> int:
        return self._block_size

    # -- queries ---------------------------------------------------------

    def lookup(self, tokens: Sequence[int], namespace: str = "") -> PrefixHit:
        """Longest cached block-aligned prefix; takes a reference on every matched block."""
        with self._lock:
            matched = self._match(tokens, namespace)
            self._take(matched, len(tokens))
        return self._hit(matched)

    def peek(self, tokens: Sequence[int], namespace: str = "") -> int:
        """Tokens ``lookup`` would match now; no references, no counters."""
        with self._lock:
            return len(self._match(tokens, namespace)) * self._block_size

    def is_evictable(self, block_id: BlockId) -> bool:
        # No lock: eviction walks call this per candidate, and one dict read plus
        # one attribute read are atomic under the GIL.
        block = self._by_id.get(block_id)
        return block is not None and block.ref_count == 0

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def block_meta(self, block_id: BlockId) -> KVBlockMeta | None:
        """What the index knows of a block (refs, depth, chain key if any); ``None`` if not cached."""
        with self._lock:
            block = self._by_id.get(block_id)
            if block is None:
                return None
            return KVBlockMeta(
                block_id=block_id,
                ref_count=block.ref_count,
                prefix_hash=self._prefix_hash(block),
                prefix_depth=self._depth(block),
            )

    def stats(self) -> PrefixCacheStats:
        with self._lock:
            return PrefixCacheStats(
                block_size=self._block_size,
                num_cached_blocks=len(self._by_id),
                num_evictable_blocks=self._num_evictable,
                num_lookups=self._num_lookups,
                num_queried_tokens=self._num_queried_tokens,
                num_hit_tokens=self._num_hit_tokens,
                num_inserted_blocks=self._num_inserted,
                num_hash_collisions=self._num_collisions,
            )

    # -- updates ---------------------------------------------------------

    def insert(self, tokens: Sequence[int], block_ids: Sequence[BlockId], namespace: str = "") -> list[BlockId]:
        """Cache the full blocks of ``tokens``; ``block_ids[i]`` holds block ``i``.

        Blocks already cached stay as they are (the caller keeps its copy);
        the others are adopted with reference 1 and their ids returned. A
        partial trailing block is ignored, as are extra ids.
        """
        num_blocks = len(tokens) // self._block_size
        if len(block_ids) < num_blocks:
            raise InvalidRequestError(
                f"insert needs one block id per full block: {len(tokens)} tokens make {num_blocks} blocks "
                f"of {self._block_size}, got {len(block_ids)} ids"
            )
        packed = pack_tokens(tokens[: num_blocks * self._block_size])
        with self._lock:
            adopted = self._insert_blocks(packed, block_ids, namespace)
            self._num_inserted += len(adopted)
        return [block.block_id for block in adopted]

    def release(self, block_ids: Sequence[BlockId]) -> None:
        """Give back one reference per listed id (an id may repeat); all checked before any changes."""
        with self._lock:
            counts = Counter(block_ids)
            for block_id, count in counts.items():
                block = self._require(block_id)
                if block.ref_count < count:
                    raise KVBlockError(
                        f"release of block {block_id} x{count} but it holds {block.ref_count} reference(s)"
                    )
            for block_id, count in counts.items():
                block = self._by_id[block_id]
                block.ref_count -= count
                if block.ref_count == 0:
                    self._num_evictable += 1

    def remove(self, block_ids: Sequence[BlockId]) -> None:
        """Forget evictable blocks; ids not cached are ignored, blocks in use are refused."""
        with self._lock:
            blocks = {block_id: self._by_id[block_id] for block_id in block_ids if block_id in self._by_id}
            in_use = sorted(block_id for block_id, block in blocks.items() if block.ref_count)
            if in_use:
                raise KVBlockError(f"cannot remove blocks still referenced (release them first): {in_use}")
            for block in blocks.values():
                self._forget(block)

    # -- hooks: the structure (caller holds the lock) --------------------

    @abstractmethod
    def _match(self, tokens: Sequence[int], namespace: str) -> list[BlockT]:
        """Cached blocks holding the leading full blocks of ``tokens``, in order; no references taken."""

    @abstractmethod
    def _insert_blocks(self, packed: bytes, block_ids: Sequence[BlockId], namespace: str) -> list[BlockT]:
        """Adopt (with :meth:`_adopt`) the uncached full blocks of ``packed``; returns them in order.

        All or nothing: on :class:`KVBlockError` nothing may stay adopted.
        """

    @abstractmethod
    def _unlink(self, block: BlockT) -> None:
        """Take ``block`` out of the structure; :meth:`_forget` has already dropped its id and counts."""

    @abstractmethod
    def _depth(self, block: BlockT) -> int:
        """Position of the block in its token chain (0 = first)."""

    def _prefix_hash(self, block: BlockT) -> int | None:
        """The block's chain key for ``KVBlockMeta.prefix_hash``; ``None`` where the structure has none."""
        return None

    # -- bookkeeping (caller holds the lock) -----------------------------

    def _adopt(self, block: BlockT) -> BlockT:
        """Register a new block (reference 1) whose id passed :meth:`_check_unused`.

        The check is the caller's: the radix tree checks a whole insert up
        front (it has no undo), the hash chain one block at a time.
        """
        self._by_id[block.block_id] = block
        return block

    def _check_unused(self, block_id: BlockId) -> None:
        """Refuse an id that already caches another prefix: one KV block cannot hold two."""
        existing = self._by_id.get(block_id)
        if existing is not None:
            raise KVBlockError(f"block {block_id} already caches another prefix (depth {self._depth(existing)})")

    def _forget(self, block: BlockT) -> None:
        del self._by_id[block.block_id]
        if block.ref_count == 0:
            self._num_evictable -= 1
        self._unlink(block)

    def _take(self, matched: list[BlockT], num_queried: int) -> None:
        """One reference per matched block, and the lookup counters."""
        for block in matched:
            self._acquire(block)
        self._num_lookups += 1
        self._num_queried_tokens += num_queried
        self._num_hit_tokens += len(matched) * self._block_size

    def _acquire(self, block: BlockT) -> None:
        if block.ref_count == 0:
            self._num_evictable -= 1
        block.ref_count += 1

    def _require(self, block_id: BlockId) -> BlockT:
        block = self._by_id.get(block_id)
        if block is None:
            raise KVBlockError(f"block {block_id} is not cached by this prefix index")
        return block

    def _hit(self, matched: list[BlockT]) -> PrefixHit:
        return PrefixHit(len(matched) * self._block_size, tuple(block.block_id for block in matched))
