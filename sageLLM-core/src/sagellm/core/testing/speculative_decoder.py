"""Conformance suite for :class:`sagellm.core.protocols.SpeculativeDecoder`."""

from __future__ import annotations

from sagellm.core.protocols import SpeculativeDecoder
from sagellm.core.types import DraftSequence

REPEATING = [5, 6, 7, 8, 9] * 6  # a span that recurs: any sensible proposer can draft here


class SpeculativeDecoderConformance:
    """Inherit and implement :meth:`make_decoder` (a fresh decoder, nothing learned yet)."""

    def make_decoder(self) -> SpeculativeDecoder:
        raise NotImplementedError

    def test_implements_the_protocol(self) -> None:
        decoder = self.make_decoder()
        assert isinstance(decoder, SpeculativeDecoder)
        assert isinstance(decoder.name, str) and decoder.name

    def test_one_list_of_at_most_num_tokens_ints_per_sequence_in_order(self) -> None:
        decoder = self.make_decoder()
        sequences = [DraftSequence("a", REPEATING, 10), DraftSequence("b", [1], 1), DraftSequence("c", [], 0)]
        for num_tokens in (1, 3, 8):
            drafts = decoder.propose(sequences, num_tokens)
            assert len(drafts) == len(sequences)
            for draft in drafts:
                assert isinstance(draft, list) and len(draft) <= num_tokens
                assert all(isinstance(t, int) and t >= 0 for t in draft)
        assert decoder.propose([], 4) == []

    def test_propose_leaves_the_sequence_alone(self) -> None:
        tokens = list(REPEATING)
        self.make_decoder().propose([DraftSequence("a", tokens, 5)], 4)
        assert tokens == REPEATING

    def test_verify_counts_the_leading_agreement(self) -> None:
        decoder = self.make_decoder()
        assert decoder.verify([1, 2, 3], [1, 2, 3, 4]) == 3
        assert decoder.verify([1, 2, 3], [1, 9, 3, 4]) == 1
        assert decoder.verify([1, 2, 3], [9, 2, 3, 4]) == 0
        assert decoder.verify([], [4]) == 0

    def test_zero_tokens_asked_gives_empty_drafts(self) -> None:
        assert self.make_decoder().propose([DraftSequence("a", REPEATING, 5)], 0) == [[]]

    def test_verify_never_counts_past_either_list(self) -> None:
        decoder = self.make_decoder()
        assert decoder.verify([1, 2], [1, 2, 3]) == 2
        assert decoder.verify([1, 2, 3], [1, 2]) == 2

    def test_accept_and_release_follow_a_request_and_forgive_unknown_ids(self) -> None:
        decoder = self.make_decoder()
        tokens = list(REPEATING)
        decoder.propose([DraftSequence("a", tokens, 5)], 4)
        tokens += [5, 6]
        decoder.accept("a", [5, 6])
        decoder.propose([DraftSequence("a", tokens, 5)], 4)
        decoder.release("a")
        try:
            decoder.release("a")
            decoder.release("never-seen")
            decoder.accept("never-seen", [1])  # a request the decoder never drafted for
        except Exception as exc:  # noqa: BLE001 -- any exception breaks the contract
            raise AssertionError(f"release/accept of an ended or unknown request must be a no-op: {exc!r}") from exc
        assert len(decoder.propose([DraftSequence("a", tokens, 5)], 2)) == 1
