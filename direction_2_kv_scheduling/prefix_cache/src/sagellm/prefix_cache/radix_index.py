"""Prefix index over a block-aligned radix tree of tokens (SGLang RadixAttention style)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sagellm.core.errors import KVBlockError
from sagellm.core.types import BlockId
from sagellm.prefix_cache.hashing import TOKEN_BYTES, pack_tokens
from sagellm.prefix_cache.radix_match import RadixMatch
from sagellm.prefix_cache.radix_node import RadixBlock, RadixNode, prune, split
from sagellm.prefix_cache.refcounted_index import RefCountedIndex

Hole = tuple[RadixNode, int, int]  # (node, offset in its edge, block index in the query)


class RadixPrefixIndex(RefCountedIndex[RadixBlock]):
    """Maps block-aligned token prefixes to cached KV blocks through a radix tree.

    Edges are runs of whole blocks and split where two prompts diverge, on a
    block boundary, because the KV unit is a block: a block is shared only if
    every token in it and before it is equal::

        root ── [sys b0 b1] ─┬─ [u1 b2 b3]          two chats on one system prompt
                             └─ [u2 b2']            diverged in the third block

    A lookup compares the query with the edges block by block (one dict probe
    per edge, one bytes compare per block, no hashing), so its cost grows with
    the query, not with the cache. Unlike the hash chain it also sees *inside*
    the next block: :meth:`match` reports how many tokens of the following
    cached block agree with the query, for copy-on-write reuse.

    Same contract and same observable behaviour as
    :class:`~sagellm.prefix_cache.HashChainPrefixIndex`: equal matched tokens,
    equal adopted blocks, equal errors. Removing an inner block leaves a
    *hole*; its descendants stay cached (and counted, and evictable on their
    own) but a lookup stops at the hole, until inserting the same prefix
    fills it and makes them reachable again, as the hash chain re-links its
    orphans. Reference counts, statistics and locking come from
    :class:`~sagellm.prefix_cache.refcounted_index.RefCountedIndex`; with no
    hashing there are no collisions to count.
    """

    implementation = "radix"

    def __init__(self, block_size: int = 16) -> None:
        super().__init__(block_size)
        self._roots: dict[str, RadixNode] = {}

    def match(self, tokens: Sequence[int], namespace: str = "") -> RadixMatch:
        """Like :meth:`lookup`, plus the tokens of the next cached block that agree with ``tokens``.

        Takes a reference on the partial block too (see :class:`RadixMatch`).
        """
        packed = pack_tokens(tokens)
        full = len(tokens) // self._block_size * self._stride
        with self._lock:
            matched, node, offset = self._descend(packed[:full], namespace)
            start = len(matched) * self._stride
            partial, num_partial = self._partial(node, offset, packed[start : start + self._stride])
            self._take(matched, len(tokens))
            if partial is not None:
                self._acquire(partial)
        return RadixMatch(self._hit(matched), num_partial, partial.block_id if partial is not None else None)

    # -- structure hooks (caller holds the lock) -------------------------

    def _match(self, tokens: Sequence[int], namespace: str) -> list[RadixBlock]:
        packed = pack_tokens(tokens[: len(tokens) // self._block_size * self._block_size])
        return self._descend(packed, namespace)[0]

    def _insert_blocks(self, packed: bytes, block_ids: Sequence[BlockId], namespace: str) -> list[RadixBlock]:
        """Fill the holes on the path, then hang the rest below the divergence point.

        All or nothing without undo: every id is checked before the tree changes.
        """
        num_blocks = len(packed) // self._stride
        holes, node, offset, index = self._walk(packed, self._root(namespace))
        self._check_adoptable([block_ids[i] for _, _, i in holes] + list(block_ids[index:num_blocks]))
        adopted = self._fill(holes, block_ids)
        if index < num_blocks:
            adopted += self._grow(node, offset, packed[index * self._stride :], block_ids[index:num_blocks])
        return adopted

    def _unlink(self, block: RadixBlock) -> None:
        """Leave a hole where the block was (its descendants stay keyed below it), then prune."""
        block.node.blocks[block.offset] = None
        prune(block.node, self._stride)

    def _depth(self, block: RadixBlock) -> int:
        return block.node.depth() + block.offset

    # -- internals (caller holds the lock) -------------------------------

    def _descend(self, packed: bytes, namespace: str) -> tuple[list[RadixBlock], RadixNode, int]:
        """Cached blocks matching ``packed`` up to the first miss or hole, and where it stopped.

        The stop is ``(node, offset)``: the query's next block would be
        ``node.blocks[offset]``, or one of ``node.children`` when the offset
        is past the edge.
        """
        root = self._roots.get(namespace)
        if root is None:
            return [], RadixNode(b"", None), 0
        matched: list[RadixBlock] = []
        node, offset, stride = root, 0, self._stride
        for start in range(0, len(packed), stride):
            data = packed[start : start + stride]
            if offset == len(node.blocks):
                child = node.children.get(data)  # the key is the child's first block: it matches
                if child is None:
                    break
                node, offset = child, 0
            elif node.data[offset * stride : (offset + 1) * stride] != data:
                break
            block = node.blocks[offset]
            if block is None:  # a hole: the hash chain stops at a removed block too
                parent = node.parent
                if offset == 0 and parent is not None:
                    node, offset = parent, len(parent.blocks)  # siblings may hold a partial block
                break
            matched.append(block)
            offset += 1
        return matched, node, offset

    def _partial(self, node: RadixNode, offset: int, rest: bytes) -> tuple[RadixBlock | None, int]:
        """The cached block after the stop sharing most leading tokens with ``rest``, and how many."""
        if not rest:
            return None, 0
        stride = self._stride
        if offset < len(node.blocks):
            candidates = [(node.blocks[offset], node.data[offset * stride : (offset + 1) * stride])]
        else:  # at a branch point: one scan over the children, only in match(), never in lookup()
            candidates = [(child.blocks[0], key) for key, child in node.children.items()]
        best: tuple[RadixBlock | None, int] = (None, 0)
        for block, data in candidates:
            shared = _shared_tokens(data, rest)
            if block is not None and shared > best[1]:
                best = (block, shared)
        return best

    def _walk(self, packed: bytes, root: RadixNode) -> tuple[list[Hole], RadixNode, int, int]:
        """Follow ``packed`` through holes: the holes on its path and where it leaves the tree."""
        holes: list[Hole] = []
        node, offset, index, stride = root, 0, 0, self._stride
        for start in range(0, len(packed), stride):
            data = packed[start : start + stride]
            if offset == len(node.blocks):
                child = node.children.get(data)
                if child is None:
                    break
                node, offset = child, 0
            elif node.data[offset * stride : (offset + 1) * stride] != data:
                break
            if node.blocks[offset] is None:
                holes.append((node, offset, index))
            offset += 1
            index += 1
        return holes, node, offset, index

    def _check_adoptable(self, fresh: list[BlockId]) -> None:
        """Refuse the insert before the tree changes, with the error :meth:`_adopt` would raise."""
        for block_id in fresh:
            self._check_unused(block_id)
        repeated = sorted(block_id for block_id, count in Counter(fresh).items() if count > 1)
        if repeated:
            raise KVBlockError(f"blocks {repeated} already cache another prefix of this insert")

    def _fill(self, holes: list[Hole], block_ids: Sequence[BlockId]) -> list[RadixBlock]:
        filled = []
        for node, offset, index in holes:
            block = node.blocks[offset] = self._adopt(RadixBlock(block_ids[index], node, offset))
            filled.append(block)
        return filled

    def _grow(self, node: RadixNode, offset: int, data: bytes, block_ids: Sequence[BlockId]) -> list[RadixBlock]:
        """Hang the uncached tail below the stop point, splitting the edge there if needed."""
        if offset < len(node.blocks):
            node = split(node, offset, self._stride)
        if node.parent is not None and not node.children:
            first = len(node.blocks)  # a leaf grows in place: one node per conversation, not per turn
            node.data += data
        else:
            first = 0
            node.children[data[: self._stride]] = node = RadixNode(data, node)
        grown = [self._adopt(RadixBlock(block_id, node, first + i)) for i, block_id in enumerate(block_ids)]
        node.blocks.extend(grown)
        return grown

    def _root(self, namespace: str) -> RadixNode:
        root = self._roots.get(namespace)
        if root is None:
            root = self._roots[namespace] = RadixNode(b"", None)
        return root


def _shared_tokens(a: bytes, b: bytes) -> int:
    """Leading tokens two packed runs have in common."""
    count = min(len(a), len(b)) // TOKEN_BYTES
    for i in range(count):
        if a[i * TOKEN_BYTES : (i + 1) * TOKEN_BYTES] != b[i * TOKEN_BYTES : (i + 1) * TOKEN_BYTES]:
            return i
    return count
