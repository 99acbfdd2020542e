"""Prefix index over a hash chain of full token blocks (vLLM-style)."""

from __future__ import annotations

from collections.abc import Sequence

from sagellm.core.errors import KVBlockError
from sagellm.core.types import BlockId
from sagellm.prefix_cache.cached_block import CachedBlock, NamespaceRoot, Node, is_child_of
from sagellm.prefix_cache.hashing import block_key, key_to_int, namespace_key, pack_tokens
from sagellm.prefix_cache.refcounted_index import RefCountedIndex


class HashChainPrefixIndex(RefCountedIndex[CachedBlock]):
    """Maps block-aligned token prefixes to cached KV blocks, with reference counts.

    Each full block is one dict entry keyed by its chain key (see
    :mod:`sagellm.prefix_cache.hashing`), so a lookup is one hash and one
    dict probe per block: its cost grows with the *query*, not with the
    number of cached tokens. A lookup walks blocks in order and stops at the
    first one that is missing, removed or fails verification::

        query    | b0 | b1 | b2 | b3 | b4 | t t
        cached   | ok | ok | ok | -- | ok |        b4 survives as an orphan
        hit      | b0 b1 b2 |  -> 3 blocks, 3 * block_size tokens

    Reference counts, the ownership contract, statistics and locking come
    from :class:`~sagellm.prefix_cache.refcounted_index.RefCountedIndex`;
    this class adds the key table beside its ``block_id`` table.
    """

    implementation = "hash_chain"
    _block_key = staticmethod(block_key)  # a seam: tests swap in a weak hash to force collisions

    def __init__(self, block_size: int = 16) -> None:
        super().__init__(block_size)
        self._roots: dict[str, NamespaceRoot] = {}
        self._by_key: dict[bytes, CachedBlock] = {}

    # -- structure hooks (caller holds the lock) -------------------------

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

    def _insert_blocks(self, packed: bytes, block_ids: Sequence[BlockId], namespace: str) -> list[CachedBlock]:
        """Adopt the chain's uncached blocks, undoing every adoption if one id is refused."""
        adopted: list[CachedBlock] = []
        try:
            self._insert_chain(packed, block_ids, namespace, adopted)
        except KVBlockError:
            for block in adopted:  # all or nothing: the caller still owns every block
                self._forget(block)
            raise
        return adopted

    def _unlink(self, block: CachedBlock) -> None:
        if self._by_key.get(block.key) is block:
            del self._by_key[block.key]

    def _depth(self, block: CachedBlock) -> int:
        return block.depth

    def _prefix_hash(self, block: CachedBlock) -> int:
        return key_to_int(block.key)

    def _adopt(self, block: CachedBlock) -> CachedBlock:
        self._check_unused(block.block_id)  # a refusal is rolled back by _insert_blocks
        self._by_key[block.key] = block
        return super()._adopt(block)

    # -- internals (caller holds the lock) -------------------------------

    def _insert_chain(
        self, packed: bytes, block_ids: Sequence[BlockId], namespace: str, adopted: list[CachedBlock]
    ) -> None:
        """Walk the chain, adopting missing blocks into ``adopted``.

        If a key is taken by different tokens (a hash collision) insertion
        stops there: the rest of the chain could not be found again anyway.
        """
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

    def _root(self, namespace: str) -> NamespaceRoot:
        root = self._roots.get(namespace)
        if root is None:
            root = self._roots[namespace] = NamespaceRoot(namespace, namespace_key(namespace))
        return root
