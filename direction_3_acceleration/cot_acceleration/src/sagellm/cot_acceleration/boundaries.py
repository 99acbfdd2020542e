"""Where a reasoning step ends: the points at which an answer probe is worth its cost.

DEER (Yang et al. 2025, "Dynamic Early Exit in Reasoning Models") probes at
"thinking transition points", where the model starts a new thought; a
probe in the middle of a sentence reads a half-done computation. Here a
step ends at a blank line, or where a line starts with a transition word
("Wait", "Alternatively", "So,", "Therefore", ...).

Only ``new_text`` (what the last engine step added) and a short tail of the
text before it are scanned, so a boundary costs O(step) per step however
long the reasoning grows, and one that straddles two engine steps ("\\n"
then "\\nWait ") is still found. A boundary counts only where it *ends*
inside ``new_text``: one already shown is not reported again.
"""

from __future__ import annotations

import re

TRANSITION_WORDS = ("Wait", "Alternatively", "Hmm", "But wait", "Therefore", "Thus", "Hence", "So")
"""Words that open a new thought at the start of a line (DEER's transition points, reasoning-model idiom)."""

# A blank line, or a transition word at the start of a line followed by a non-letter ("So," not "Some").
# The trailing character is part of the match so the boundary "ends" once the word is known to be complete.
STEP_END = re.compile(r"\n[ \t]*\n|\n[ \t]*(?:" + "|".join(TRANSITION_WORDS) + r")[^A-Za-z]")
TAIL_CHARS = 24  # longer than any boundary pattern ("\n  Alternatively,"), so one split across steps is found


def ends_step(text: str, new_text: str) -> bool:
    """Whether the last engine step (``new_text``, the end of ``text``) completed a step boundary."""
    if not new_text:
        return False
    start = max(0, len(text) - len(new_text) - TAIL_CHARS)
    window = text[start:]
    if start == 0:
        window = "\n" + window  # the first line of the reasoning starts a line too
    new_from = len(window) - len(new_text)
    return any(match.end() > new_from for match in STEP_END.finditer(window))
