"""``self`` and ``draft``: drafts from a model the engine lends, and the layer choice of self speculation.

The source here is a stand-in for an engine's: its "model" continues a
sequence by counting up, and a layer subset predicts the full model's
token with a share given by the layers it keeps, so the calibration's
choice can be checked exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sagellm.core.config import SpeculativeDecodingSection
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import DraftModel, DraftModelSource, SpeculativeDecoder
from sagellm.core.registry import create_speculative_decoder
from sagellm.core.testing import DraftModelConformance, SpeculativeDecoderConformance
from sagellm.core.types import DraftSequence
from sagellm.speculative_decoding import DraftModelDecoder, SelfSpeculativeDecoder, choose_layers, predicted_speedup
from sagellm.speculative_decoding.layer_calibration import draft_cost, parse_layers

IMPORTANCE = [0.30, 0.02, 0.05, 0.01, 0.04, 0.40]  # agreement lost by dropping each of 6 layers


class CountingModel:
    """Drafts last + 1, last + 2, ...; remembers which requests it has seen."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: set[str] = set()

    def greedy(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        self.seen.update(s.request_id for s in sequences if s.token_ids)
        return [[s.token_ids[-1] + i for i in range(1, num_tokens + 1)] if s.token_ids else [] for s in sequences]

    def release(self, request_id: str) -> None:
        self.seen.discard(request_id)


class CountingSource:
    num_layers = len(IMPORTANCE)

    def __init__(self) -> None:
        self.opened: list[tuple[str, object]] = []
        self.scored = 0

    def layer_subset(self, layers: Sequence[int]) -> DraftModel:
        self.opened.append(("layers", tuple(layers)))
        return CountingModel("subset")

    def load(self, path: str) -> DraftModel:
        if path != "draft.gguf":
            raise ConfigError(f"no such draft model: {path}")
        self.opened.append(("file", path))
        return CountingModel(path)

    def agreement(self, draft: Sequence[int] | DraftModel) -> float:
        assert not isinstance(draft, CountingModel)
        self.scored += 1
        return 1.0 - sum(w for i, w in enumerate(IMPORTANCE) if i not in set(draft))  # type: ignore[arg-type]


def _section(implementation: str, **options: object) -> SpeculativeDecodingSection:
    return SpeculativeDecodingSection(implementation=implementation, num_speculative_tokens=4, options=options)


def test_the_stand_in_source_is_a_draft_model_source() -> None:
    assert isinstance(CountingSource(), DraftModelSource)


def test_predicted_speedup_is_expected_tokens_over_cost() -> None:
    assert predicted_speedup(0.0, 0.5, 4) == (pytest.approx(1 / 1.7), 1)
    speedup, k = predicted_speedup(0.9, 0.2, 4)
    assert k == 4 and speedup == pytest.approx(sum(0.9**j for j in range(5)) / (4 * 0.2 + 1.2))
    assert draft_cost(6, 6) == pytest.approx(1.0) and draft_cost(3, 6) < 0.6


def test_calibration_drops_the_least_needed_layers_and_keeps_the_best_prediction() -> None:
    source = CountingSource()
    choice = choose_layers(source.num_layers, source.agreement, max_tokens=4)
    # dropping 3, 1, 4, 2 in that order; the best prediction among the nested subsets wins
    candidates = {}
    kept = list(range(6))
    for layer in (3, 1, 4, 2):
        kept.remove(layer)
        agreement = 1.0 - sum(IMPORTANCE[i] for i in range(6) if i not in kept)
        candidates[tuple(kept)] = predicted_speedup(agreement, draft_cost(len(kept), 6), 4)[0]
    best = max(candidates, key=lambda layers: candidates[layers])
    assert choice.layers == best
    assert choice.predicted_speedup == pytest.approx(candidates[best])
    assert source.scored <= 2 * source.num_layers


def test_layers_are_read_from_lists_ranges_and_single_numbers() -> None:
    assert parse_layers("0-2,5", 6) == (0, 1, 2, 5)
    assert parse_layers([5, 0, 0], 6) == (0, 5)
    assert parse_layers(3, 6) == (3,)
    for bad in ("0-9", "a-b", [], 2.5, "-1"):
        with pytest.raises(ConfigError, match="layers"):
            parse_layers(bad, 6)


def test_self_takes_given_layers_without_calibrating() -> None:
    source = CountingSource()
    decoder = SelfSpeculativeDecoder.from_config(_section("self", layers="0,2-5"), draft_models=source)
    assert decoder.layers == (0, 2, 3, 4, 5) and decoder.choice is None and source.scored == 0
    assert source.opened == [("layers", (0, 2, 3, 4, 5))]


def test_self_calibrates_when_no_layers_are_given() -> None:
    source = CountingSource()
    decoder = SelfSpeculativeDecoder.from_config(_section("self"), draft_models=source)
    assert decoder.choice is not None and decoder.layers == decoder.choice.layers and source.scored > 0


def test_draft_opens_the_file_it_is_given() -> None:
    source = CountingSource()
    decoder = DraftModelDecoder.from_config(_section("draft", model="draft.gguf"), draft_models=source)
    assert source.opened == [("file", "draft.gguf")]
    assert decoder.propose([DraftSequence("a", [4, 5])], 3) == [[6, 7, 8]]
    decoder.release("a")
    assert isinstance(decoder.model, CountingModel) and not decoder.model.seen


@pytest.mark.parametrize(
    ("implementation", "options", "message"),
    [
        ("draft", {}, "draft model's path"),
        ("draft", {"model": "draft.gguf", "k": 2}, "unknown option"),
        ("draft", {"model": "other.gguf"}, "no such draft model"),
        ("self", {"skip": 2}, "unknown option"),
    ],
)
def test_bad_options_are_refused(implementation: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_speculative_decoder(_section(implementation, **options), draft_models=CountingSource())


@pytest.mark.parametrize("implementation", ["self", "draft"])
def test_without_an_engine_lending_models_they_are_refused(implementation: str) -> None:
    with pytest.raises(ConfigError, match="DraftModelSource"):
        create_speculative_decoder(_section(implementation, model="draft.gguf"))


class TestSelfConformance(SpeculativeDecoderConformance):
    def make_decoder(self) -> SpeculativeDecoder:
        return create_speculative_decoder(_section("self"), draft_models=CountingSource())


class TestDraftConformance(SpeculativeDecoderConformance):
    def make_decoder(self) -> SpeculativeDecoder:
        return create_speculative_decoder(_section("draft", model="draft.gguf"), draft_models=CountingSource())


class TestCountingModelConformance(DraftModelConformance):
    """The stand-in itself keeps the DraftModel contract, so the tests above test real behaviour."""

    def make_draft_model(self) -> DraftModel:
        return CountingModel("counting")
