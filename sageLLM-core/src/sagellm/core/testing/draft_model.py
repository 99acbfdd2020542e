"""Conformance suite for :class:`sagellm.core.protocols.DraftModel` (what an engine lends a decoder)."""

from __future__ import annotations

from sagellm.core.protocols import DraftModel
from sagellm.core.types import DraftSequence

PROMPT = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]


class DraftModelConformance:
    """Inherit and implement :meth:`make_draft_model` (a fresh model, no request seen).

    The model must be deterministic: greedy drafts are a function of the
    tokens shown, however they were reached.
    """

    def make_draft_model(self) -> DraftModel:
        raise NotImplementedError

    def test_implements_the_protocol(self) -> None:
        model = self.make_draft_model()
        assert isinstance(model, DraftModel)
        assert isinstance(model.name, str) and model.name

    def test_one_list_of_num_tokens_ints_per_sequence_in_order(self) -> None:
        model = self.make_draft_model()
        sequences = [DraftSequence("a", PROMPT, 12), DraftSequence("b", PROMPT[:3], 3), DraftSequence("c", [], 0)]
        drafts = model.greedy(sequences, 3)
        assert len(drafts) == 3 and drafts[2] == []
        for draft in drafts[:2]:
            assert isinstance(draft, list) and len(draft) == 3 and all(isinstance(t, int) and t >= 0 for t in draft)
        assert model.greedy([], 4) == [] and model.greedy([DraftSequence("a", PROMPT, 12)], 0) == [[]]

    def test_greedy_continues_itself(self) -> None:
        """Four drafts at once are two drafts, then two more after them."""
        model = self.make_draft_model()
        four = model.greedy([DraftSequence("a", PROMPT, 12)], 4)[0]
        two = model.greedy([DraftSequence("b", PROMPT, 12)], 2)[0]
        more = model.greedy([DraftSequence("b", PROMPT + two, 12)], 2)[0]
        assert two + more == four

    def test_catching_up_after_rejected_drafts_equals_starting_fresh(self) -> None:
        """The target kept one draft and chose its own token: the model redoes what it had drafted past it."""
        model = self.make_draft_model()
        drafts = model.greedy([DraftSequence("a", PROMPT, 12)], 4)[0]
        grown = PROMPT + drafts[:1] + [(drafts[1] + 1) % 7 + 30]
        again = model.greedy([DraftSequence("a", grown, 12)], 3)[0]
        assert again == self.make_draft_model().greedy([DraftSequence("fresh", grown, 12)], 3)[0]

    def test_greedy_leaves_the_sequence_alone(self) -> None:
        tokens = list(PROMPT)
        self.make_draft_model().greedy([DraftSequence("a", tokens, 12)], 3)
        assert tokens == PROMPT

    def test_release_frees_and_forgives_unknown_ids(self) -> None:
        model = self.make_draft_model()
        first = model.greedy([DraftSequence("a", PROMPT, 12)], 2)
        model.release("a")
        try:
            model.release("a")
            model.release("never-seen")
        except Exception as exc:  # noqa: BLE001 -- any exception breaks the contract
            raise AssertionError(f"release of an ended or unknown request must be a no-op: {exc!r}") from exc
        assert model.greedy([DraftSequence("a", PROMPT, 12)], 2) == first
