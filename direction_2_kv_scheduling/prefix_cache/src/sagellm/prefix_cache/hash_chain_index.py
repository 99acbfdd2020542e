"""Prefix index over a hash chain of full token blocks (vLLM-style)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError, InvalidRequestError, KVBlockError
from sagellm.core.types import BlockId, KVBlockMeta, PrefixHit
from sagellm.prefix_cache.cached_block import CachedBlock, NamespaceRoot, Node, is_child_of
from sagellm.prefix_cache.hashing import TOKEN_BYTES, block_key, key_to_int, namespace_key, pack_tokens
from sagellm.prefix_cache.stats import PrefixCacheStats


class HashChainPrefixIndex:
    """Maps block-aligned token prefixes to cached KV blocks, with reference counts.

    Each full block is one dict entry keyed by its chain key (see
    :mod:`sagellm.prefix_cache.hashing`), so a lookup is one hash and one
    dict probe per block: its cost grows with the *query*, not with the
    number of cached tokens. A lookup walks blocks in order and stops at the
    first one that is missing, removed or fails verification::

        query    | b0 | b1 | b2 | b3 | b4 | t t
        cached   | ok | ok | ok | -- | ok |        b4 survives as an orphan
        hit      | b0 b1 b2 |  -> 3 blocks, 3 * block_size tokens

    Ownership (the :class:`~sagellm.core.protocols.PrefixIndex` contract):
    ``lookup`` takes a reference on each matched block, ``insert`` adopts
    uncached blocks with reference 1 and returns their ids, ``release`` gives
    references back, a block with none is evictable, ``remove`` forgets
    evictable blocks. Misuse (unknown ids, releasing more than was taken,
    removing a block in use) raises :class:`~sagellm.core.errors.KVBlockError`
    and changes nothing.

    One lock guards every call: the server thread may ``peek`` or ``lookup``
    while the engine thread inserts; hashing is pure Python under the GIL,
    so a finer lock would not buy parallelism.
    """

    _block_key = staticmethod(block_key)  # a seam: tests swap in a weak hash to force collisions

    def __init__(self, block_size: int = 16) -> None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size must be a positive int, got {block_size!r}")
        self._block_size = block_size
        self._stride = block_size * TOKEN_BYTES
        self._lock = threading.Lock()
        self._roots: dict[str, NamespaceRoot] = {}
        self._by_key: dict[bytes, CachedBlock] = {}
        self._by_id: dict[BlockId, CachedBlock] = {}
        self._num_evictable = 0
        self._num_lookups = 0
        self._num_queried_tokens = 0
        self._num_hit_tokens = 0
        self._num_inserted = 0
        self._num_collisions = 0

    @classmethod
    def from_config(cls, section: Section, *, block_size: int) -> HashChainPrefixIndex:
        """Build from the ``prefix_cache`` section; ``block_size`` comes from the KV pool."""
        options: dict[str, Any] = dict(section.options)
        if options:
            raise ConfigError(f"prefix_cache.options: hash_chain takes no options, got {sorted(options)}")
        return cls(block_size=block_size)

    @property
    def block_size(self) -> int:
        return self._block_size

    # -- queries ---------------------------------------------------------

    def lookup(self, tokens: Sequence[int], namespace: str = "") -> PrefixHit:
        """Longest cached prefix of ``tokens``; takes a reference on every matched block."""
        with self._lock:
            matched = self._match(tokens, namespace)
            for block in matched:
                self._acquire(block)
            self._num_lookups += 1
            self._num_queried_tokens += len(tokens)
            self._num_hit_tokens += len(matched) * self._block_size
        return PrefixHit(len(matched) * self._block_size, tuple(block.block_id for block in matched))

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
        """What the index knows of a block (refs, chain key, depth); ``None`` if not cached."""
        with self._lock:
            block = self._by_id.get(block_id)
            if block is None:
                return None
            return KVBlockMeta(
                block_id=block_id,
                ref_count=block.ref_count,
                prefix_hash=key_to_int(block.key),
                prefix_depth=block.depth,
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
        partial trailing block is ignored, as are extra ids. If a key is taken
        by different tokens (a hash collision) insertion stops there: the
        rest of the chain could not be found again anyway.
        """
        num_blocks = len(tokens) // self._block_size
        if len(block_ids) < num_blocks:
            raise InvalidRequestError(
                f"insert needs one block id per full block: {len(tokens)} tokens make {num_blocks} blocks "
                f"of {self._block_size}, got {len(block_ids)} ids"
            )
        packed = pack_tokens(tokens[: num_blocks * self._block_size])
        with self._lock:
            adopted: list[CachedBlock] = []
            try:
                self._insert_chain(packed, block_ids, namespace, adopted)
            except KVBlockError:
                for block in adopted:  # all or nothing: the caller still owns every block
                    self._forget(block)
                raise
            self._num_inserted += len(adopted)
        return [block.block_id for block in adopted]

    def release(self, block_ids: Sequence[BlockId]) -> None:
        """Give back one reference per listed id (an id may repeat)."""
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

    # -- internals (caller holds the lock) -------------------------------

    def _match(self, tokens: Sequence[int], namespace: str) -> list[CachedBlock]:
        num_blocks = len(tokens) // self._block_size
        root = self._roots.get(namespace)
        if root is None or num_blocks == 0:
            return []
        packed = pack_tokens(tokens[: num_blocks * self._block_size])
        matched: list[CachedBlock] = []
        parent: Node = root
        stride, find, key_of = self._stride, self._by_key.get, self._block_key  # hot loop: bind once
        for start in range(0, num_blocks * stride, stride):
            data = packed[start : start + stride]
            block = find(key_of(parent.key, data))
            if block is None:
                break
            if (block.parent is not parent or block.data != data) and not is_child_of(block, parent, data):
                break  # fast path above is one pointer and one 64-byte compare; this is the rare re-link
            matched.append(block)
            parent = block
        return matched

    def _insert_chain(
        self, packed: bytes, block_ids: Sequence[BlockId], namespace: str, adopted: list[CachedBlock]
    ) -> None:
        parent: Node = self._root(namespace)
        stride = self._stride
        for depth, start in enumerate(range(0, len(packed), stride)):
            data = packed[start : start + stride]
            key = self._block_key(parent.key, data)
            block = self._by_key.get(key)
            if block is None:
                block = self._adopt(CachedBlock(key, parent, data, block_ids[depth], depth))
                adopted.append(block)
            elif not is_child_of(block, parent, data):
                self._num_collisions += 1
                return
            parent = block

    def _adopt(self, block: CachedBlock) -> CachedBlock:
        if block.block_id in self._by_id:
            raise KVBlockError(
                f"block {block.block_id} already caches another prefix (depth {self._by_id[block.block_id].depth})"
            )
        self._by_key[block.key] = block
        self._by_id[block.block_id] = block
        return block

    def _forget(self, block: CachedBlock) -> None:
        if self._by_key.get(block.key) is block:
            del self._by_key[block.key]
        del self._by_id[block.block_id]
        if block.ref_count == 0:
            self._num_evictable -= 1

    def _acquire(self, block: CachedBlock) -> None:
        if block.ref_count == 0:
            self._num_evictable -= 1
        block.ref_count += 1

    def _require(self, block_id: BlockId) -> CachedBlock:
        block = self._by_id.get(block_id)
        if block is None:
            raise KVBlockError(f"block {block_id} is not cached by this prefix index")
        return block

    def _root(self, namespace: str) -> NamespaceRoot:
        root = self._roots.get(namespace)
        if root is None:
            root = self._roots[namespace] = NamespaceRoot(namespace, namespace_key(namespace))
        return root
