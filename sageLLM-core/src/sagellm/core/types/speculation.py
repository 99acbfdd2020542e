"""What a speculative decoder is shown of one running sequence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DraftSequence:
    """A sequence to draft for: its id and every token so far (prompt, then output).

    ``token_ids`` is the engine's own list, not a copy (a copy per step would
    cost O(length)); a proposer reads it and never changes it.
    """

    request_id: str
    token_ids: Sequence[int]
    num_prompt_tokens: int = 0
