"""Behaviour specific to RadixPrefixIndex: splits, partial-block matches, holes, errors."""

from __future__ import annotations

import random

import pytest

from sagellm.core.errors import KVBlockError
from sagellm.prefix_cache import RadixMatch, RadixPrefixIndex
from sagellm.prefix_cache.radix_node import RadixNode

BS = 4
A = list(range(100, 116))  # four blocks
B = A[:8] + [900, 901, 902, 903, 904, 905, 906, 907]  # shares two blocks with A


def _cached(index: RadixPrefixIndex, tokens: list[int], ids: list[int]) -> list[int]:
    adopted = index.insert(tokens, ids)
    index.release(adopted)
    return adopted


def _edges(index: RadixPrefixIndex, namespace: str = "") -> list[int]:
    """Edge lengths in blocks, depth first: the shape of the tree."""
    out: list[int] = []

    def visit(node: RadixNode) -> None:
        for child in node.children.values():
            out.append(len(child.blocks))
            visit(child)

    visit(index._roots[namespace])
    return out


# -- shape: edges split on block boundaries --------------------------------


def test_divergence_splits_the_edge_on_a_block_boundary() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    assert _edges(index) == [4]
    assert _cached(index, B, [20, 21, 22, 23]) == [22, 23]
    assert sorted(_edges(index)) == [2, 2, 2]
    assert index.lookup(A).block_ids == (10, 11, 12, 13)
    assert index.lookup(B).block_ids == (10, 11, 22, 23)


def test_divergence_inside_a_block_shares_only_the_blocks_before_it() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A[:8], [10, 11])
    other = A[:5] + [0, 0, 0]  # equal up to token 5: only block 0 is shared
    assert _cached(index, other, [20, 21]) == [21]
    assert index.lookup(other).block_ids == (10, 21)


def test_a_leaf_grows_in_place_and_a_prefix_needs_no_split() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A[:8], [10, 11])
    assert _cached(index, A, [10, 11, 12, 13]) == [12, 13]
    assert _edges(index) == [4], "the next turn of a conversation extends its leaf"
    assert _cached(index, A[:4], [30]) == []
    assert _edges(index) == [4]


def test_block_meta_reports_depth_across_nodes() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    _cached(index, B, [20, 21, 22, 23])
    meta = index.block_meta(23)
    assert meta is not None and meta.prefix_depth == 3 and meta.ref_count == 0
    assert index.block_meta(99) is None


# -- partial-block matches ----------------------------------------------------


def test_match_reports_tokens_inside_the_next_block() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    result = index.match(A[:9] + [A[9], 0, 0, 0])  # diverges at token 10, inside block 2
    assert result.hit.block_ids == (10, 11)
    assert (result.num_partial_tokens, result.partial_block_id) == (2, 12)
    assert result.num_matched_tokens == 10


def test_match_reports_a_trailing_partial_query_block() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    assert index.match(A[:7]) == RadixMatch(index.lookup(A[:7]), 3, 11)


def test_match_picks_the_best_child_at_a_branch_point() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    _cached(index, B, [20, 21, 22, 23])
    result = index.match(A[:8] + [900, 901, 902, 0])
    assert result.hit.block_ids == (10, 11) and (result.num_partial_tokens, result.partial_block_id) == (3, 22)
    result = index.match(A[:8] + [7])
    assert (result.num_partial_tokens, result.partial_block_id) == (0, None)


def test_match_takes_a_reference_on_the_partial_block() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    result = index.match(A[:6])
    assert result.partial_block_id == 11 and not index.is_evictable(11), "must survive until copied"
    index.release([*result.hit.block_ids, 11])
    assert index.is_evictable(10) and index.is_evictable(11)


def test_match_does_not_report_a_hole() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    index.remove([11])
    result = index.match(A[:6])
    assert result.hit.block_ids == (10,) and result.partial_block_id is None
    assert index.match([5, 5]).num_matched_tokens == 0, "an empty tree matches nothing"


def test_match_looks_past_a_hole_at_an_edge_start_to_its_siblings() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, [1, 2, 3, 4, 5, 6, 7, 8], [10, 11])
    _cached(index, [1, 2, 3, 9], [20])
    index.remove([10])  # a hole at the start of an edge; block 11 keeps the edge alive
    result = index.match([1, 2, 3, 4])
    assert result.hit.block_ids == ()
    assert (result.num_partial_tokens, result.partial_block_id) == (3, 20)
    index.release([20])


def test_match_agrees_with_brute_force_on_random_prompts() -> None:
    rng = random.Random(7)
    index = RadixPrefixIndex(block_size=BS)
    cached: list[list[int]] = []
    next_id = 0
    for _ in range(200):
        stem = rng.choice([*cached, []])[: rng.randrange(0, 20)]
        tokens = stem + [rng.randrange(3) for _ in range(rng.randrange(12))]
        if rng.random() < 0.5:
            ids = list(range(next_id, next_id + len(tokens) // BS))
            next_id += len(ids)
            _cached(index, tokens, ids)
            cached.append(tokens[: len(tokens) // BS * BS])
            continue
        longest = max((_common(tokens, seq) for seq in cached), default=0)
        result = index.match(tokens)
        assert result.hit.num_matched_tokens == longest // BS * BS
        assert result.num_partial_tokens == longest % BS
        assert (result.partial_block_id is None) == (longest % BS == 0)
        partial = [] if result.partial_block_id is None else [result.partial_block_id]
        index.release(list(result.hit.block_ids) + partial)
    assert index.stats().num_evictable_blocks == len(index)


def _common(a: list[int], b: list[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


# -- remove: holes behave like the hash chain's orphans ---------------------------


def test_removing_an_inner_block_leaves_a_hole_and_keeps_descendants() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    index.remove([11])
    assert len(index) == 3 and 12 in index and index.is_evictable(12)
    assert index.lookup(A).block_ids == (10,), "lookup stops at the hole"
    index.release([10])
    assert index.insert(A, [30, 31, 32, 33]) == [31], "only the hole is adopted"
    assert index.lookup(A).block_ids == (10, 31, 12, 13), "descendants are reachable again"


def test_removing_leaves_prunes_the_tree() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A, [10, 11, 12, 13])
    _cached(index, B, [20, 21, 22, 23])
    index.remove([13, 12, 22, 23])
    assert _edges(index) == [2]
    index.remove([11, 10])
    assert _edges(index) == [] and len(index) == 0


# -- misuse raises and changes nothing --------------------------------------------


def test_block_id_cached_elsewhere_changes_nothing() -> None:
    index = RadixPrefixIndex(block_size=BS)
    _cached(index, A[:8], [10, 11])
    with pytest.raises(KVBlockError, match="already caches"):
        index.insert([7] * 12, [20, 21, 10])
    assert len(index) == 2 and 20 not in index
    assert _edges(index) == [2]
