"""Nodes of the hash chain and the check that makes collisions harmless.

The dict maps ``key -> CachedBlock``; the key only *locates* a candidate.
A candidate is accepted as block ``i`` of a query only if

1. its stored tokens equal the query's block ``i`` (byte compare), and
2. its ``parent`` *is* the node accepted as block ``i - 1`` (identity),
   the root of the query's namespace for ``i == 0``.

By induction every accepted node then holds exactly the query's tokens at
exactly the query's position, whatever the hash does. The identity test is
one pointer compare, so the fast path costs nothing extra.

Removing a block leaves its children cached (they may still be referenced)
but *orphaned*: their ``parent`` points at the removed node. When the same
prefix is inserted again the new parent is a different object, so the
identity test fails once; :func:`same_chain` then compares the old and the
new ancestors token by token and, if equal, re-links the child. That is how
a recomputed prefix finds its surviving children again, as in vLLM, without
trusting a 64-bit key.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types import BlockId


@dataclass(slots=True, eq=False)
class NamespaceRoot:
    """The parent of every depth-0 block in one namespace; never removed."""

    namespace: str
    key: bytes


@dataclass(slots=True, eq=False)
class CachedBlock:
    """One cached KV block: where it sits in its chain and who uses it.

    ``eq=False``: nodes are compared by identity, which is the whole point.
    ``data`` keeps the packed tokens (4 bytes each) for the collision check.
    """

    key: bytes
    parent: CachedBlock | NamespaceRoot
    data: bytes
    block_id: BlockId
    depth: int
    ref_count: int = 1


Node = CachedBlock | NamespaceRoot


def same_chain(old: Node, new: Node) -> bool:
    """Whether two parent chains spell the same tokens in the same namespace.

    Walks both chains up until they meet at a shared node; costs one byte
    compare per level, and only runs when a child is re-linked.
    """
    while old is not new:
        if not isinstance(old, CachedBlock) or not isinstance(new, CachedBlock):
            return False  # different namespaces or different depths
        if old.key != new.key or old.data != new.data:
            return False
        old, new = old.parent, new.parent
    return True


def is_child_of(block: CachedBlock, parent: Node, data: bytes) -> bool:
    """Whether ``block`` holds ``data`` right after ``parent``; re-links a verified orphan."""
    if block.data != data:
        return False
    if block.parent is parent:
        return True
    if same_chain(block.parent, parent):
        block.parent = parent  # re-link once; later matches take the fast path
        return True
    return False
