"""Self speculation and draft models in the engine, on a tiny random target/draft pair written with gguf.

The target has 4 random layers; the draft file holds the same first 3
(same seed), so it agrees with the target often but not always: every
test verifies kept and rejected drafts. A free cost model makes the
engine verify every planned draft, whatever speculation would pay here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from engines_helpers import drive
from tiny_gguf import write_tiny_llama

from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError
from sagellm.core.testing import DraftModelConformance
from sagellm.core.types import DraftSequence, SamplingParams
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.cli.options import speculative_settings
from sagellm.engines.engine.builder import assemble_engine
from sagellm.engines.engine.step_cost import StepCostModel
from sagellm.engines.runtime.draft_runner import PagedDraftModel

PROMPTS = ["The lighthouse keeper climbed the steps", "def fibonacci(n):", "Tell me about the sea.", "1, 2, 3,"]
GREEDY_24 = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
SECTIONS: dict[str, Any] = {"kv_pool": {"num_blocks": 64}, "scheduler_ir": {"max_num_seqs": 8}}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return {
        "target": write_tiny_llama(folder / "target.gguf", num_layers=4, seed=7),
        "draft": write_tiny_llama(folder / "draft.gguf", num_layers=3, seed=7),
        "foreign": write_tiny_llama(folder / "foreign.gguf", num_layers=2, seed=7, swap_tokens=(1000, 1001)),
    }


@pytest.fixture(scope="module")
def target(pair: dict[str, Path]) -> LLM:
    """The target, loaded once: each test assembles its engine around it (its row costs are timed once)."""
    return LLM(model={"path": str(pair["target"]), "dtype": "float32"}, show_progress=False, **SECTIONS)


def _engine(target: LLM, speculative_decoding: dict[str, Any] | None = None) -> LLMEngine:
    sections: dict[str, Any] = {**SECTIONS, "model": {"path": "unused: the model is given", "dtype": "float32"}}
    if speculative_decoding is not None:
        sections["speculative_decoding"] = speculative_decoding
    return assemble_engine(load_config(**sections), target.engine.runner.model, target.tokenizer)


def _run(engine: LLMEngine, sampling: SamplingParams = GREEDY_24, one_at_a_time: bool = False) -> list[list[int]]:
    prompts = [engine.tokenizer.encode(p) for p in PROMPTS]
    return drive(engine, prompts, sampling=sampling, one_at_a_time=one_at_a_time).token_ids


def _always_verify(engine: LLMEngine) -> LLMEngine:
    """Rows and draft passes cost nothing: the budget verifies every draft it can get."""
    assert engine.speculator is not None
    engine.speculator.cost = _Flat(1e-3)
    engine.speculator.draft_cost = _Flat(0.0)
    return engine


class _Flat(StepCostModel):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def predict(self, rows: int) -> float | None:
        return self.seconds


def _draft_spec(pair: dict[str, Path], which: str = "draft") -> dict[str, Any]:
    return {"implementation": "draft", "num_speculative_tokens": 3, "options": {"model": str(pair[which])}}


@pytest.fixture(scope="module")
def plain_outputs(target: LLM) -> list[list[int]]:
    return _run(_engine(target))


def test_a_draft_model_speculates_exactly(target: LLM, pair: dict[str, Path], plain_outputs: list[list[int]]) -> None:
    engine = _always_verify(_engine(target, _draft_spec(pair)))
    speculator = engine.speculator
    assert speculator is not None and speculator.decoder.name == "draft"
    assert _run(engine) == plain_outputs
    assert 0 < speculator.num_kept < speculator.num_drafted  # drafts kept and rejected
    assert 0.0 < speculator.acceptance.prior < 1.0  # the draft's measured agreement seeds the budget


def test_one_at_a_time_is_exact_too(target: LLM, pair: dict[str, Path]) -> None:
    engine = _always_verify(_engine(target, _draft_spec(pair)))
    assert _run(engine, one_at_a_time=True) == _run(_engine(target), one_at_a_time=True)


def test_the_target_as_its_own_draft_keeps_every_draft(
    target: LLM, pair: dict[str, Path], plain_outputs: list[list[int]]
) -> None:
    """Same weights, same float32 kernels: only a draft KV that failed to catch up could be rejected."""
    engine = _always_verify(_engine(target, _draft_spec(pair, "target")))
    assert _run(engine) == plain_outputs
    assert engine.speculator is not None
    assert engine.speculator.num_drafted > 40 and engine.speculator.accept_rate == 1.0


def test_self_speculation_with_chosen_layers_is_exact(target: LLM, plain_outputs: list[list[int]]) -> None:
    engine = _always_verify(
        _engine(target, {"implementation": "self", "num_speculative_tokens": 3, "options": {"layers": "0-2"}})
    )
    speculator: Any = engine.speculator
    assert speculator.decoder.layers == (0, 1, 2)
    assert _run(engine) == plain_outputs
    assert 0 < speculator.num_kept < speculator.num_drafted


def test_self_speculation_drafts_what_the_cut_file_drafts(target: LLM, pair: dict[str, Path]) -> None:
    """Layers 0-2 of the target are the 3-layer file: the two drafters must agree token for token."""
    by_layers: Any = _engine(target, {"implementation": "self", "options": {"layers": [0, 1, 2]}}).speculator
    by_file: Any = _engine(target, _draft_spec(pair)).speculator
    sequence = [DraftSequence("a", list(range(1, 10)))]
    assert by_layers.decoder.propose(sequence, 4) == by_file.decoder.propose(sequence, 4)


def test_self_speculation_calibrates_its_layers(target: LLM) -> None:
    decoder: Any = _engine(target, {"implementation": "self", "num_speculative_tokens": 3}).speculator.decoder  # type: ignore[union-attr]
    choice = decoder.choice
    assert choice is not None and decoder.layers == choice.layers
    assert 1 <= len(choice.layers) < 4 and 0.0 <= choice.agreement <= 1.0 and choice.predicted_speedup > 0


def test_a_seeded_sample_is_the_same_with_a_draft_model(target: LLM, pair: dict[str, Path]) -> None:
    sampling = SamplingParams(max_tokens=24, temperature=0.8, seed=11, ignore_eos=True)
    engine = _always_verify(_engine(target, _draft_spec(pair)))
    assert _run(engine, sampling) == _run(_engine(target), sampling)


def test_finished_requests_give_their_draft_kv_back(target: LLM, pair: dict[str, Path]) -> None:
    engine = _always_verify(_engine(target, _draft_spec(pair)))
    draft: Any = engine.speculator.decoder.model  # type: ignore[union-attr]
    free_before = len(draft._free)
    _run(engine)
    assert len(draft._free) == free_before and not draft._drafts


def test_a_draft_with_another_vocabulary_is_refused(target: LLM, pair: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="different tokenizer"):
        _engine(target, _draft_spec(pair, "foreign"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"implementation": "draft"}, "draft model's path"),
        ({"implementation": "draft", "options": {"model": "x", "size": 1}}, "unknown option"),
        ({"implementation": "self", "options": {"layers": "0-9"}}, "subset of 0..3"),
        ({"implementation": "self", "options": {"depth": 2}}, "unknown option"),
    ],
)
def test_bad_options_are_refused(target: LLM, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _engine(target, spec)


def test_vllms_draft_model_config_is_ours_draft() -> None:
    args = argparse.Namespace(
        speculative=None,
        num_speculative_tokens=None,
        speculative_option=[],
        speculative_config='{"method": "draft_model", "model": "d.gguf", "num_speculative_tokens": 3}',
    )
    assert speculative_settings(args) == {
        "implementation": "draft",
        "num_speculative_tokens": 3,
        "options": {"model": "d.gguf"},
    }
    args.speculative_config, args.speculative, args.speculative_option = None, "draft", ["model=d.gguf"]
    assert speculative_settings(args)["options"] == {"model": "d.gguf"}


class TestPagedDraftModel(DraftModelConformance):
    @pytest.fixture(autouse=True)
    def _target(self, target: LLM) -> None:
        self.target = target

    def make_draft_model(self) -> PagedDraftModel:
        return PagedDraftModel("tiny", self.target.engine.runner.model, num_blocks=16)
