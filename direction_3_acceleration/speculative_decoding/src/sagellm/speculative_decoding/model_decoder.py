"""A speculative decoder whose drafts come from a model the engine runs (core's ``DraftModel``)."""

from __future__ import annotations

from collections.abc import Sequence

from sagellm.core.protocols import DraftModel
from sagellm.core.types import DraftSequence
from sagellm.speculative_decoding.acceptance import greedy_accepted


class ModelDraftDecoder:
    """Drafts are the draft model's greedy continuation; it catches up on what was kept by itself.

    ``accept`` has nothing to learn: the draft model compares the sequence
    it is shown with what it drafted and reruns only the difference.
    """

    def __init__(self, name: str, model: DraftModel) -> None:
        self.name = name
        self.model = model

    def propose(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        if not sequences:
            return []
        return self.model.greedy(sequences, num_tokens)

    def verify(self, draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> int:
        return greedy_accepted(draft_token_ids, target_token_ids)

    def accept(self, request_id: str, token_ids: Sequence[int]) -> None:
        return None

    def release(self, request_id: str) -> None:
        self.model.release(request_id)
