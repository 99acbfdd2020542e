"""Step boundaries: blank lines and transition words at line start, found once, even split across steps."""

from __future__ import annotations

import pytest

from sagellm.cot_acceleration import ends_step


def shown(*chunks: str) -> list[bool]:
    """ends_step after each chunk, as the engine would ask after each of its steps."""
    text, found = "", []
    for chunk in chunks:
        text += chunk
        found.append(ends_step(text, chunk))
    return found


def test_a_blank_line_ends_a_step() -> None:
    assert shown("Half of 48 is 24.", "\n\n", "Then") == [False, True, False]


def test_a_blank_line_split_over_two_steps_is_found_once() -> None:
    assert shown("24.\n", "\nThen", " 48") == [False, True, False]
    assert shown("24.\n", "  \n") == [False, True]  # blank line with spaces on it


@pytest.mark.parametrize("word", ["Wait,", "Alternatively,", "So,", "Therefore ", "Hmm...", "But wait,", "Thus "])
def test_transition_words_at_line_start(word: str) -> None:
    assert shown("x = 4.\n", word) == [False, True]


def test_a_word_is_a_boundary_only_once_it_is_complete_and_at_line_start() -> None:
    assert shown("x = 4.\nWa", "it", ",") == [False, False, True]
    assert shown("x = 4.\nSome", " more") == [False, False]  # "So" inside "Some"
    assert shown("x = 4. Wait,", " no") == [False, False]  # not at line start
    assert shown("x = 4.\nwait,") == [False]  # lower case mid-text is not DEER's transition marker


def test_a_boundary_already_shown_is_not_reported_again() -> None:
    assert shown("a\n\n", "b", "c") == [True, False, False]


def test_the_first_line_of_the_reasoning_counts_as_line_start() -> None:
    assert shown("Wait,") == [True]


def test_nothing_new_is_no_boundary() -> None:
    assert ends_step("a\n\n", "") is False
    assert ends_step("", "") is False


def test_only_a_short_tail_is_scanned() -> None:
    long_text = "\n\n" + "word " * 10_000
    assert ends_step(long_text, "word ") is False  # the old blank line is far behind
