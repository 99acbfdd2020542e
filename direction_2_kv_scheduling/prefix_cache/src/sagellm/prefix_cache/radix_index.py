"""Prefix index over a block-aligned radix tree of tokens (SGLang RadixAttention style)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError, InvalidRequestError, KVBlockError
from sagellm.core.types import BlockId, KVBlockMeta, PrefixHit
from sagellm.prefix_cache.hashing import TOKEN_BYTES, pack_tokens
from sagellm.prefix_cache.radix_match import RadixMatch
from sagellm.prefix_cache.radix_node import RadixBlock, RadixNode, prune, split
from sagellm.prefix_cache.stats import PrefixCacheStats

Hole = tuple[RadixNode, int, int]  # (node, offset in its edge, block index in the query)


class RadixPrefixIndex:
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
    orphans. One lock guards every call except the lock-free ``is_evictable``.
    """

    def __init__(self, block_size: int = 16) -> None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size must be a positive int, got {block_size!r}")
        self._block_size = block_size
        self._stride = block_size * TOKEN_BYTES
        self._lock = threading.Lock()
        self._roots: dict[str, RadixNode] = {}
        self._by_id: dict[BlockId, RadixBlock] = {}
        self._num_evictable = 0
        self._num_lookups = 0
        self._num_queried_tokens = 0
        self._num_hit_tokens = 0
        self._num_inserted = 0

    @classmethod
    def from_config(cls, section: Section, *, block_size: int) -> RadixPrefixIndex:
        """Build from the ``prefix_cache`` section; ``block_size`` comes from the KV pool."""
        options: dict[str, Any] = dict(section.options)
        if options:
            raise ConfigError(f"prefix_cache.options: radix takes no options, got {sorted(options)}")
        return cls(block_size=block_size)

    @property
    def block_size(self) -> int:
        return self._block_size

    # -- queries ---------------------------------------------------------

    def lookup(self, tokens: Sequence[int], namespace: str = "") -> PrefixHit:
        """Longest cached block-aligned prefix; takes a reference on every matched block."""
        packed = self._pack_full(tokens)
        with self._lock:
            matched, _, _ = self._descend(packed, namespace)
            self._take(matched, len(tokens))
        return PrefixHit(len(matched) * self._block_size, tuple(block.block_id for block in matched))

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
        hit = PrefixHit(len(matched) * self._block_size, tuple(block.block_id for block in matched))
        return RadixMatch(hit, num_partial, partial.block_id if partial is not None else None)

    def peek(self, tokens: Sequence[int], namespace: str = "") -> int:
        """Tokens ``lookup`` would match now; no references, no counters."""
        packed = self._pack_full(tokens)
        with self._lock:
            return len(self._descend(packed, namespace)[0]) * self._block_size

    def is_evictable(self, block_id: BlockId) -> bool:
        # No lock, as in the hash chain: one dict read and one attribute read are atomic under the GIL.
        block = self._by_id.get(block_id)
        return block is not None and block.ref_count == 0

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def block_meta(self, block_id: BlockId) -> KVBlockMeta | None:
        """What the index knows of a block (refs, depth); ``None`` if not cached."""
        with self._lock:
            block = self._by_id.get(block_id)
            if block is None:
                return None
            depth = block.node.depth() + block.offset
            return KVBlockMeta(block_id=block_id, ref_count=block.ref_count, prefix_depth=depth)

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
                num_hash_collisions=0,  # no hashing: tokens are compared, never keyed
            )

    # -- updates ---------------------------------------------------------

    def insert(self, tokens: Sequence[int], block_ids: Sequence[BlockId], namespace: str = "") -> list[BlockId]:
        """Cache the full blocks of ``tokens``; ``block_ids[i]`` holds block ``i``.

        Blocks already cached stay as they are; holes on the path and blocks
        past the divergence point are adopted with reference 1 and their ids
        returned. All or nothing: an id that is already cached elsewhere
        raises :class:`KVBlockError` before anything changes.
        """
        num_blocks = len(tokens) // self._block_size
        if len(block_ids) < num_blocks:
            raise InvalidRequestError(
                f"insert needs one block id per full block: {len(tokens)} tokens make {num_blocks} blocks "
                f"of {self._block_size}, got {len(block_ids)} ids"
            )
        packed = self._pack_full(tokens)
        with self._lock:
            holes, node, offset, index = self._walk(packed, self._root(namespace))
            fresh = [block_ids[i] for _, _, i in holes] + list(block_ids[index:num_blocks])
            self._check_adoptable(fresh)
            adopted = self._fill(holes, block_ids)
            if index < num_blocks:
                adopted += self._grow(node, offset, packed[index * self._stride :], block_ids[index:num_blocks])
            self._num_inserted += len(adopted)
        return fresh

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
        """Forget evictable blocks (inner ones leave a hole); unknown ids ignored, blocks in use refused."""
        with self._lock:
            blocks = {block_id: self._by_id[block_id] for block_id in block_ids if block_id in self._by_id}
            in_use = sorted(block_id for block_id, block in blocks.items() if block.ref_count)
            if in_use:
                raise KVBlockError(f"cannot remove blocks still referenced (release them first): {in_use}")
            for block in blocks.values():
                block.node.blocks[block.offset] = None
                del self._by_id[block.block_id]
                self._num_evictable -= 1
                prune(block.node, self._stride)

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
                if offset == 0 and node.parent is not None:
                    node, offset = node.parent, len(node.parent.blocks)  # siblings may hold a partial block
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
        for block_id in fresh:
            if block_id in self._by_id:
                depth = self._by_id[block_id].offset + self._by_id[block_id].node.depth()
                raise KVBlockError(f"block {block_id} already caches another prefix (depth {depth})")
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

    def _adopt(self, block: RadixBlock) -> RadixBlock:
        self._by_id[block.block_id] = block
        return block

    def _take(self, matched: list[RadixBlock], num_queried: int) -> None:
        for block in matched:
            self._acquire(block)
        self._num_lookups += 1
        self._num_queried_tokens += num_queried
        self._num_hit_tokens += len(matched) * self._block_size

    def _acquire(self, block: RadixBlock) -> None:
        if block.ref_count == 0:
            self._num_evictable -= 1
        block.ref_count += 1

    def _require(self, block_id: BlockId) -> RadixBlock:
        block = self._by_id.get(block_id)
        if block is None:
            raise KVBlockError(f"block {block_id} is not cached by this prefix index")
        return block

    def _root(self, namespace: str) -> RadixNode:
        root = self._roots.get(namespace)
        if root is None:
            root = self._roots[namespace] = RadixNode(b"", None)
        return root

    def _pack_full(self, tokens: Sequence[int]) -> bytes:
        return pack_tokens(tokens[: len(tokens) // self._block_size * self._block_size])


def _shared_tokens(a: bytes, b: bytes) -> int:
    """Leading tokens two packed runs have in common."""
    count = min(len(a), len(b)) // TOKEN_BYTES
    for i in range(count):
        if a[i * TOKEN_BYTES : (i + 1) * TOKEN_BYTES] != b[i * TOKEN_BYTES : (i + 1) * TOKEN_BYTES]:
            return i
    return count
