"""Prompt lookup copies what followed the tail before; the suffix table carries spans across requests."""

from __future__ import annotations

import pytest

from sagellm.core.config import SpeculativeDecodingSection
from sagellm.core.errors import ConfigError
from sagellm.core.registry import create_speculative_decoder
from sagellm.core.types import DraftSequence
from sagellm.speculative_decoding import NgramDecoder, PromptLookupIndex, SharedSuffixTable


def test_the_longest_earlier_match_of_the_tail_is_copied() -> None:
    tokens = [1, 2, 3, 4, 5, 9, 9, 2, 3, 4, 7, 8, 1, 2, 3, 4]
    # tail (2, 3, 4): latest earlier end is position 9 (followed by 7, 8, 1); 4-gram (1,2,3,4) ends at 3 (-> 5, 9, 9)
    assert PromptLookupIndex(2, 4).draft(tokens, 3) == [5, 9, 9]
    assert PromptLookupIndex(2, 3).draft(tokens, 3) == [7, 8, 1]


def test_no_match_no_draft_and_drafts_stop_at_the_sequence_end() -> None:
    assert PromptLookupIndex(2, 4).draft([1, 2, 3, 4], 4) == []
    assert PromptLookupIndex(1, 2).draft([7, 8, 7], 4) == [8, 7]  # "7" ended at 0; what followed: 8, 7
    assert PromptLookupIndex(1, 2).draft([], 4) == []


def test_the_index_grows_with_the_sequence() -> None:
    index = PromptLookupIndex(2, 2)
    tokens = [1, 2, 3, 1]
    assert index.draft(tokens, 2) == []
    tokens += [2]
    assert index.draft(tokens, 2) == [3, 1]
    tokens += [3, 1, 2]
    assert index.draft(tokens, 3) == [3, 1, 2]  # the latest (1, 2) ended at 4


def test_incremental_drafts_equal_a_fresh_index_on_random_text() -> None:
    import random

    rng = random.Random(0)
    tokens: list[int] = []
    grown = PromptLookupIndex(1, 4)
    for _ in range(300):
        tokens.append(rng.randrange(6))
        assert grown.draft(tokens, 4) == PromptLookupIndex(1, 4).draft(tokens, 4)


def test_the_suffix_table_drafts_what_earlier_requests_emitted() -> None:
    decoder = NgramDecoder(suffix_context=2, suffix_min_count=2)
    answer = [50, 51, 52, 53, 54]
    for request in ("r1", "r2"):
        prompt = [10, 11, 40, 41]
        decoder.propose([DraftSequence(request, prompt, len(prompt))], 4)
        decoder.accept(request, answer)
        decoder.release(request)
    fresh = [20, 21, 40, 41]  # a prompt that never held the answer, ending in the same context
    assert decoder.propose([DraftSequence("r3", fresh, 4)], 4) == [[50, 51, 52, 53]]
    once = NgramDecoder(suffix_context=2, suffix_min_count=2)
    once.propose([DraftSequence("r1", [10, 11, 40, 41], 4)], 4)
    once.accept("r1", answer)
    assert once.propose([DraftSequence("r3", fresh, 4)], 4) == [[]]  # seen once: below suffix_min_count


def test_the_suffix_table_stays_within_its_bound_and_needs_a_majority() -> None:
    table = SharedSuffixTable(context=1, min_count=1, min_share=0.6, max_entries=3)
    table.learn([], list(range(10)))
    assert len(table) == 3
    split = SharedSuffixTable(context=1, min_count=1, min_share=0.6, max_entries=10)
    split.learn([1], [2])
    split.learn([1], [3])
    assert split.draft([1], 2) == []  # 2 and 3 each follow 1 half the time
    split.learn([1], [2])
    assert split.draft([1], 1) == [2]


def test_options_are_checked_and_named_like_vllms() -> None:
    section = SpeculativeDecodingSection(implementation="ngram", options={"prompt_lookup_max": 5})
    assert create_speculative_decoder(section).prompt_lookup_max == 5  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="unknown option"):
        create_speculative_decoder(SpeculativeDecodingSection(implementation="ngram", options={"max_ngram": 3}))
    with pytest.raises(ConfigError, match="prompt_lookup_min"):
        NgramDecoder(prompt_lookup_min=3, prompt_lookup_max=2)
    with pytest.raises(ConfigError, match="suffix_min_share"):
        NgramDecoder(suffix_min_share=1.5)
