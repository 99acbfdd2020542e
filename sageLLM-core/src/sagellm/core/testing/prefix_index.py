"""Conformance suite for :class:`sagellm.core.protocols.PrefixIndex`."""

from __future__ import annotations

from sagellm.core.protocols import PrefixIndex

BS = 4  # block size used throughout: small so the arithmetic is easy to read
A = list(range(100, 112))  # three full blocks
B = A[:8] + [900, 901, 902, 903]  # shares two blocks with A, differs in the third


class PrefixIndexConformance:
    """Inherit and implement :meth:`make_index`."""

    def make_index(self, block_size: int) -> PrefixIndex:
        raise NotImplementedError

    def _index(self) -> PrefixIndex:
        index = self.make_index(BS)
        assert isinstance(index, PrefixIndex)
        assert index.block_size == BS
        return index

    def test_empty_index_matches_nothing(self) -> None:
        index = self._index()
        hit = index.lookup(A)
        assert hit.num_matched_tokens == 0 and hit.block_ids == ()
        assert len(index) == 0

    def test_insert_then_lookup_matches_full_blocks(self) -> None:
        index = self._index()
        assert index.insert(A, [10, 11, 12]) == [10, 11, 12]
        hit = index.lookup(A)
        assert hit.num_matched_tokens == 12
        assert hit.block_ids == (10, 11, 12)
        assert len(index) == 3

    def test_partial_trailing_block_is_ignored(self) -> None:
        index = self._index()
        assert index.insert(A[:10], [10, 11, 12]) == [10, 11]
        assert index.lookup(A).block_ids == (10, 11)
        assert index.lookup(A[:7]).block_ids == (10,)

    def test_shared_prefix_maps_to_same_blocks(self) -> None:
        index = self._index()
        index.insert(A, [10, 11, 12])
        adopted = index.insert(B, [20, 21, 22])
        assert adopted == [22], "equal prefixes must have equal keys"
        assert index.lookup(B).block_ids == (10, 11, 22)
        assert index.lookup(A[:8] + [0, 0, 0, 0]).block_ids == (10, 11)

    def test_same_block_content_at_other_position_is_not_shared(self) -> None:
        index = self._index()
        index.insert([1, 2, 3, 4, 5, 6, 7, 8], [10, 11])
        assert index.lookup([5, 6, 7, 8]).num_matched_tokens == 0

    def test_peek_counts_without_references(self) -> None:
        index = self._index()
        index.insert(A, [10, 11, 12])
        index.release([10, 11, 12])
        assert index.peek(A[:9]) == 8
        assert index.is_evictable(10) and index.is_evictable(11)

    def test_reference_counting_controls_evictability(self) -> None:
        index = self._index()
        index.insert(A, [10, 11, 12])
        assert not index.is_evictable(10), "the inserting sequence holds a reference"
        index.release([10, 11, 12])
        assert index.is_evictable(10)
        index.lookup(A[:4])
        assert not index.is_evictable(10) and index.is_evictable(11)
        index.lookup(A[:4])
        index.release([10])
        assert not index.is_evictable(10)
        index.release([10])
        assert index.is_evictable(10)

    def test_remove_forgets_blocks(self) -> None:
        index = self._index()
        index.insert(A, [10, 11, 12])
        index.release([10, 11, 12])
        index.remove([12])
        assert 12 not in index and 10 in index
        assert index.lookup(A).block_ids == (10, 11)
        assert len(index) == 2

    def test_namespaces_never_share(self) -> None:
        index = self._index()
        index.insert(A, [10, 11, 12], namespace="model-a")
        assert index.lookup(A, namespace="model-b").num_matched_tokens == 0
        assert index.lookup(A, namespace="model-a").num_matched_tokens == 12

    def test_many_sequences_round_trip(self) -> None:
        index = self._index()
        next_block = 0
        expected = {}
        for seq in range(50):
            tokens = [seq % 5] * 8 + [seq, seq + 1000, seq + 2000, seq + 3000]
            ids = list(range(next_block, next_block + 3))
            next_block += 3
            adopted = index.insert(tokens, ids)
            expected[seq] = tokens
            index.release(adopted)
        for tokens in expected.values():
            assert index.lookup(tokens).num_matched_tokens == 12
