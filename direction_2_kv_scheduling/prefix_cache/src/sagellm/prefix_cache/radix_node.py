"""Nodes of the block-aligned radix tree and the two edits that reshape it.

An edge is a run of whole blocks, stored as packed tokens (4 bytes each,
see :mod:`sagellm.prefix_cache.hashing`) plus one slot per block::

    node.data    | b0 tokens | b1 tokens | b2 tokens |     len = k * stride
    node.blocks  | RadixBlock| None      | RadixBlock|     len = k
                              ^ a hole: the block was removed, its
                                descendants stay (they may be in use)

Children are keyed by the packed tokens of their *first block*, so two
children of one node never start with the same block and a lookup descends
with one dict probe per edge and one bytes compare per block.

Holes reproduce the hash chain's orphans: a lookup stops at a hole, and
inserting the same prefix again fills it, after which the descendants are
reachable again, exactly as the hash chain re-links its orphans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sagellm.core.types import BlockId


@dataclass(slots=True, eq=False)
class RadixBlock:
    """One cached KV block: where it sits in the tree and who uses it."""

    block_id: BlockId
    node: RadixNode
    offset: int  # index into ``node.blocks``
    ref_count: int = 1


@dataclass(slots=True, eq=False)
class RadixNode:
    """An edge of whole blocks and the subtree below it; the root's edge is empty."""

    data: bytes
    parent: RadixNode | None
    blocks: list[RadixBlock | None] = field(default_factory=list)
    children: dict[bytes, RadixNode] = field(default_factory=dict)

    def depth(self) -> int:
        """Blocks above this node's edge: walks to the root, used only for metadata."""
        depth, node = 0, self.parent
        while node is not None:
            depth += len(node.blocks)
            node = node.parent
        return depth


def split(node: RadixNode, num_blocks: int, stride: int) -> RadixNode:
    """Cut ``node``'s edge after ``num_blocks`` blocks; returns the new upper node.

    ::

        parent -> node[b0 b1 b2 b3]      split(node, 2)     parent -> upper[b0 b1] -> node[b2 b3]

    The upper node takes the first block's key in the parent, so the parent
    needs no other change. Blocks moving down get their offsets shifted.
    """
    parent = node.parent
    assert parent is not None and 0 < num_blocks < len(node.blocks)
    cut = num_blocks * stride
    upper = RadixNode(node.data[:cut], parent, node.blocks[:num_blocks])
    for block in upper.blocks:
        if block is not None:
            block.node = upper
    node.data, node.blocks, node.parent = node.data[cut:], node.blocks[num_blocks:], upper
    for offset, block in enumerate(node.blocks):
        if block is not None:
            block.offset = offset
    upper.children[node.data[:stride]] = node
    parent.children[upper.data[:stride]] = upper
    return upper


def prune(node: RadixNode, stride: int) -> None:
    """Drop trailing holes of childless nodes, and nodes left empty, walking up.

    A hole with descendants must stay (the descendants are keyed below it);
    a trailing hole of a leaf holds nothing and would only cost memory.
    """
    while node.parent is not None and not node.children:
        keep = len(node.blocks)
        while keep and node.blocks[keep - 1] is None:
            keep -= 1
        if keep:
            del node.blocks[keep:]
            node.data = node.data[: keep * stride]
            return
        parent = node.parent
        del parent.children[node.data[:stride]]
        node = parent
