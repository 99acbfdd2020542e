"""Self-consistency with early stopping (ESC, Li et al. 2024, "Escape Sky-high Cost").

Self-consistency (Wang et al. 2023) samples many reasoning paths and votes.
ESC draws them a window of ``w`` at a time and stops as soon as one
window's answers are all the same (zero entropy): on an easy question the
first window agrees and ``w`` samples replace 40. Windows are the
consecutive blocks of the draw order, as in ESC's own code::

    answers:  7 7 8 7 7 | 7 7 7 7 7 | ...      (w = 5)
    window 1: not all equal -> draw the next window
    window 2: all 7         -> stop after 10 samples, answer 7

A sample whose answer could not be read (None) never agrees with anything,
so a window holding one never stops the draw. When no window agrees before
the sample limit, the answer is the plain majority of everything drawn
(:func:`majority_vote`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def consistent(answers: Sequence[str | None], window: int) -> str | None:
    """The answer of the latest *complete* window when all of it agrees (and is not None), else None.

    Answers past the last complete window (a window still being drawn) are
    not looked at yet, so calling this after every finished sample gives
    the same decisions as calling it once per window.
    """
    complete = len(answers) // window * window
    if complete == 0:
        return None
    latest = answers[complete - window : complete]
    first = latest[0]
    if first is None or any(answer != first for answer in latest):
        return None
    return first


def samples_until_consistent(answers: Sequence[str | None], window: int) -> int:
    """How many of ``answers`` (in draw order) ESC draws: up to the first agreeing window, else all."""
    for end in range(window, len(answers) + 1, window):
        if consistent(answers[:end], window) is not None:
            return end
    return len(answers)


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-None answer; a tie goes to the answer seen first; None when none was read."""
    counts = Counter(answer for answer in answers if answer is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(answer for answer in answers if answer is not None and counts[answer] == best)
