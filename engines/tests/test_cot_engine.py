"""Chain-of-thought acceleration in the engine: probes forked from a request, budgets, self-consistency.

The accelerator is scripted (``cot_scripted.py``): SmolLM2-135M cannot
reason, so these tests fix the decisions and check the mechanism -- the
request exits exactly where the synthetic answer trace stabilises, a probe
prefills nothing but its suffix (it shares the request's KV), its answer
and confidence are what a fresh greedy run from the same text gives, the
budget caps the reasoning, and self-consistency stops at the first
agreeing window, cancelling the samples still running. Generations stay
short (<= 32 tokens) so the module runs in seconds.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import torch
from cot_scripted import SUFFIX, ScriptedAccelerator, register

from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError, InvalidRequestError
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.cli.options import add_engine_options, config_from_args
from sagellm.engines.engine.llm import GenerationResult
from sagellm.engines.engine.reasoning_options import ReasoningOptions
from sagellm.engines.engine.slots import DISAGGREGATED_KINDS, ENGINE_KINDS, check_slots
from sagellm.engines.runtime.input_batch import ChunkWork

register()

QUESTION = [{"role": "user", "content": "What is 7 times 8? Think step by step."}]
GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
EARLY_EXIT = ReasoningOptions(early_exit=True)


def llm_of(engine: LLMEngine) -> LLM:
    """An ``LLM`` around an engine the test assembled (``LLM.generate`` is what users call)."""
    llm = LLM.__new__(LLM)
    llm.engine, llm.tokenizer = engine, engine.tokenizer
    return llm


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread, as the server tests run: these steps are a few rows each, and two OpenMP threads
    on two cores that other work shares cost more in waiting for each other than they compute."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def question(llm: LLM) -> list[int]:
    return llm.tokenizer.encode_chat(QUESTION)


@pytest.fixture(scope="module")
def baseline(llm: LLM, question: list[int]) -> GenerationResult:
    """The request without any reasoning option: greedy, 24 tokens."""
    return llm.generate([question], GREEDY)[0]


@pytest.fixture
def cot_llm(make_engine: Callable[..., LLMEngine]) -> Callable[..., LLM]:
    def make(**options: Any) -> LLM:
        return llm_of(make_engine(cot_acceleration={"implementation": "scripted", "options": options}))

    return make


@pytest.fixture
def chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[LLM], list[tuple[str, int, int]]]]:
    """Spy on an engine's runner: (request id, start, tokens) of every chunk it computes."""

    def watch(llm: LLM) -> list[tuple[str, int, int]]:
        seen: list[tuple[str, int, int]] = []
        runner = llm.engine.runner
        execute = runner.execute

        def spy(works: list[ChunkWork]) -> Any:
            seen.extend((w.seq.request_id, w.start, w.num_tokens) for w in works)
            return execute(works)

        monkeypatch.setattr(runner, "execute", spy)
        return seen

    yield watch


def accelerator(llm: LLM) -> ScriptedAccelerator:
    assert llm.engine.cot is not None
    accelerator = llm.engine.cot.accelerator
    assert isinstance(accelerator, ScriptedAccelerator)
    return accelerator


def assert_idle(llm: LLM) -> None:
    """Nothing runs and every KV block is back (free, or cached and evictable): no fork leaked a reference."""
    engine = llm.engine
    assert not engine.has_unfinished()
    assert engine.kv.num_free_blocks == engine.kv.pool.layout.num_blocks


# ---------------------------------------------------------------- early exit
def test_exit_where_the_synthetic_answer_stabilises(
    cot_llm: Callable[..., LLM], question: list[int], baseline: GenerationResult
) -> None:
    llm = cot_llm(answers={4: "12", 8: "54", 12: "56", 16: "56", 20: "56"}, stable=2, max_probe_tokens=3)
    outputs: list[StepOutput] = []
    result = llm.generate([question], GREEDY, on_output=outputs.append, reasoning=EARLY_EXIT)[0]
    assert [p.num_tokens for p in accelerator(llm).probes] == [4, 8, 12, 16]  # every boundary, in order
    report = result.reasoning
    assert report is not None and report.stopped_by == "probe" and report.num_reasoning_tokens == 12 + 4
    assert result.finish_reason == "stop"
    suffix_ids = list(llm.engine.cot.suffix_ids) if llm.engine.cot else []
    assert result.token_ids[:16] == baseline.token_ids[:16]
    assert result.token_ids[16 : 16 + len(suffix_ids)] == suffix_ids
    answer_ids = result.token_ids[16 + len(suffix_ids) :]
    answer_text = llm.tokenizer.decode(answer_ids)
    assert result.text.endswith(SUFFIX + answer_text)
    assert baseline.text.startswith(result.text[: -len(SUFFIX + answer_text)])
    # Streamed outputs add up to the result; the answer comes last, with the finish.
    assert "".join(o.new_text for o in outputs) == result.text
    assert outputs[-1].finished and outputs[-1].new_text.endswith(SUFFIX + answer_text)
    assert_idle(llm)


def test_probe_reads_what_a_fresh_run_from_the_same_text_reads(
    cot_llm: Callable[..., LLM], llm: LLM, question: list[int], baseline: GenerationResult
) -> None:
    """The probe continues the request's shared KV; a separate request prefills the same text from scratch."""
    cot = cot_llm(answers={4: "x", 8: "x"}, stable=2, max_probe_tokens=3)
    result = cot.generate([question], GREEDY, reasoning=EARLY_EXIT)[0]
    probe = accelerator(cot).probes[-1]
    assert probe.num_tokens == 8
    suffix_ids = list(cot.engine.cot.suffix_ids) if cot.engine.cot else []
    fresh_params = SamplingParams(max_tokens=3, temperature=0.0, logprobs=0)
    fresh = llm.engine
    rid = fresh.add_request(question + baseline.token_ids[:8] + suffix_ids, fresh_params)
    tokens: list[int] = []
    logprobs: list[float] = []
    while fresh.has_unfinished():
        for out in fresh.step():
            if out.request_id == rid:
                tokens += out.new_token_ids
                logprobs += out.logprobs or ()
    answer_ids = result.token_ids[8 + len(suffix_ids) :]
    assert answer_ids and tokens[: len(answer_ids)] == answer_ids
    assert any(probe.text == llm.tokenizer.decode(tokens[:k]) for k in range(1, len(tokens) + 1))
    expected = math.exp(sum(logprobs[: len(answer_ids)]) / len(answer_ids))  # geometric mean of the answer's tokens
    assert result.reasoning is not None and result.reasoning.confidence == pytest.approx(expected, rel=1e-3)


def test_probes_prefill_only_their_suffix(
    cot_llm: Callable[..., LLM],
    chunks: Callable[[LLM], list[tuple[str, int, int]]],
    make_engine: Callable[..., LLMEngine],
    question: list[int],
) -> None:
    llm = cot_llm(answers={4: "a", 8: "b", 12: "b"}, stable=2, max_probe_tokens=3)
    seen = chunks(llm)
    result = llm.generate([question], GREEDY, reasoning=EARLY_EXIT)[0]
    suffix = len(llm.engine.cot.suffix_ids) if llm.engine.cot else 0
    request = [c for c in seen if "#" not in c[0]]
    probes: dict[str, list[tuple[int, int]]] = {}
    for request_id, start, num_tokens in seen:
        if "#probe" in request_id:
            probes.setdefault(request_id, []).append((start, num_tokens))
    assert len(probes) >= 3
    for probe_id, probe_chunks in probes.items():
        index = int(probe_id.rsplit("#probe", 1)[1])
        fork_point = len(question) + 4 * (index + 1)
        assert probe_chunks[0] == (fork_point, suffix), probe_id  # the suffix: its only prefill
        assert all(num_tokens == 1 for _, num_tokens in probe_chunks[1:])  # then greedy decode
    # The request itself computed exactly what it computes without probes: its prompt once, one token a step.
    assert result.reasoning is not None
    plain = llm_of(make_engine())
    plain_seen = chunks(plain)
    generated = result.reasoning.num_generated_tokens
    plain.generate([question], SamplingParams(max_tokens=generated, temperature=0.0, ignore_eos=True))
    assert [c[1:] for c in request] == [c[1:] for c in plain_seen]
    assert_idle(llm)


def test_a_probe_that_never_stops_changes_nothing(
    cot_llm: Callable[..., LLM], question: list[int], baseline: GenerationResult
) -> None:
    llm = cot_llm(answers={}, stable=99, max_probe_tokens=2)
    outputs: list[StepOutput] = []
    result = llm.generate([question], GREEDY, on_output=outputs.append, reasoning=EARLY_EXIT)[0]
    assert result.token_ids == baseline.token_ids and result.text == baseline.text
    assert result.finish_reason == baseline.finish_reason == "length"
    assert "".join(o.new_text for o in outputs) == baseline.text  # held outputs were all sent, in order
    assert result.reasoning is not None and result.reasoning.stopped_by == "finished"
    assert result.reasoning.num_probes >= 4
    assert_idle(llm)


# ---------------------------------------------------------------- token budget
def test_budget_caps_the_reasoning_with_a_forced_answer(
    cot_llm: Callable[..., LLM], question: list[int], baseline: GenerationResult
) -> None:
    llm = cot_llm(answers={}, stable=99, max_probe_tokens=3)
    result = llm.generate([question], GREEDY, reasoning=ReasoningOptions(budget=10))[0]
    report = result.reasoning
    assert report is not None and report.stopped_by == "budget" and report.num_reasoning_tokens == 10
    assert report.num_probes == 1 and accelerator(llm).probes == []  # forced: kept without asking
    assert report.num_generated_tokens <= 12  # parked at the cap, not decoding on while the answer is read
    suffix_ids = list(llm.engine.cot.suffix_ids) if llm.engine.cot else []
    assert result.token_ids[:10] == baseline.token_ids[:10]
    assert result.token_ids[10 : 10 + len(suffix_ids)] == suffix_ids
    assert result.finish_reason == "stop" and SUFFIX in result.text
    assert_idle(llm)


def test_budget_is_asked_for_in_a_text_prompt(cot_llm: Callable[..., LLM]) -> None:
    llm = cot_llm(max_probe_tokens=2)
    result = llm.generate(["Q: what is 2 + 3?"], GREEDY, reasoning=ReasoningOptions(budget=6))[0]
    assert "Think for at most 6 tokens." in llm.tokenizer.decode(result.prompt_token_ids)
    assert result.reasoning is not None and result.reasoning.stopped_by == "budget"


# ---------------------------------------------------------------- self-consistency
def test_self_consistency_stops_at_the_first_agreeing_window(
    cot_llm: Callable[..., LLM], chunks: Callable[[LLM], list[tuple[str, int, int]]], question: list[int]
) -> None:
    llm = cot_llm(answer="56", esc_window=2)
    seen = chunks(llm)
    params = SamplingParams(max_tokens=6, temperature=0.8, seed=3)
    result = llm.generate([question], params, reasoning=ReasoningOptions(self_consistency=6))[0]
    report = result.reasoning
    assert report is not None and report.answer == "56" and report.stopped_by == "consistency"
    # The request's own sample prefilled the prompt, so it runs one step ahead of its sibling: it finishes
    # first, alone (no window yet), and a third sample is drawn to keep two in flight -- then the sibling's
    # answer completes an agreeing window and the third is cancelled.
    assert report.answers == ("56", "56") and report.num_samples == 3 and report.num_cancelled == 1
    sample = [(start, n) for rid, start, n in seen if rid.endswith("#sample1")]
    assert sample[0] == (len(question) - 1, 1)  # the prompt's KV shared: only its last token, for own logits
    assert result.text and result.finish_reason == "length"
    assert_idle(llm)


def test_samples_forked_from_the_prompt_are_the_samples_a_fresh_request_draws(
    cot_llm: Callable[..., LLM], llm: LLM, question: list[int]
) -> None:
    """Sample i shares the prompt's KV and runs with seed + i: exactly request i of plain n-sampling."""
    cot = cot_llm(answer_is_text=True, esc_window=3)
    params = SamplingParams(max_tokens=8, temperature=0.8, seed=11, ignore_eos=True)
    result = cot.generate([question], params, reasoning=ReasoningOptions(self_consistency=3))[0]
    assert result.reasoning is not None and result.reasoning.num_samples == 3
    fresh = llm.generate([question] * 3, [replace(params, seed=11 + i) for i in range(3)])
    assert sorted(result.reasoning.answers, key=str) == sorted((r.text for r in fresh), key=str)


def test_self_consistency_cancels_the_samples_still_running(cot_llm: Callable[..., LLM], question: list[int]) -> None:
    """Samples exit early except sample 1; once two answers agree, sample 1 is cancelled mid-reasoning."""
    llm = cot_llm(answer="56", esc_window=2, never_stop=["#sample1"], max_probe_tokens=2)
    params = SamplingParams(max_tokens=32, temperature=0.8, seed=5, ignore_eos=True)
    options = ReasoningOptions(early_exit=True, self_consistency=6)
    result = llm.generate([question], params, reasoning=options)[0]
    report = result.reasoning
    assert report is not None and report.stopped_by == "consistency" and report.answer == "56"
    assert report.num_samples == 3 and report.num_cancelled == 1 and report.answers == ("56", "56")
    assert SUFFIX in result.text  # the winner is the request's own sample, ended by its probe
    released = accelerator(llm).released
    assert any(r.endswith("#sample1") for r in released)
    assert_idle(llm)


def test_abort_cancels_probes_and_samples(cot_llm: Callable[..., LLM], question: list[int]) -> None:
    llm = cot_llm(answers={}, stable=99, max_probe_tokens=4, probe_every=2, esc_window=3)
    engine = llm.engine
    params = SamplingParams(max_tokens=32, temperature=0.8, seed=1, ignore_eos=True)
    rid = engine.add_request(question, params, reasoning=ReasoningOptions(early_exit=True, self_consistency=4))
    for _ in range(8):
        engine.step()
    assert engine.num_running > 3  # three samples and their probes
    assert engine.abort_request(rid)
    assert_idle(llm)
    assert not engine.abort_request(rid)


# ---------------------------------------------------------------- configuration and validation
def test_reasoning_needs_an_accelerator(make_engine: Callable[..., LLMEngine], question: list[int]) -> None:
    with pytest.raises(InvalidRequestError, match="chain-of-thought"):
        make_engine().add_request(question, GREEDY, reasoning=EARLY_EXIT)


@pytest.mark.parametrize(
    "bad", [{"budget": 0}, {"budget": 2.5}, {"self_consistency": 0}, {"self_consistency": 65}, {"early_exit": 1}]
)
def test_bad_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        ReasoningOptions(**bad)


def test_the_slot_is_wired_and_checked() -> None:
    assert "cot_accelerator" in ENGINE_KINDS and "cot_accelerator" not in DISAGGREGATED_KINDS
    check_slots(load_config(cot_acceleration={"implementation": "scripted"}))
    with pytest.raises(ConfigError, match="no cot_accelerator implementation named 'missing'"):
        check_slots(load_config(cot_acceleration={"implementation": "missing"}))


# ---------------------------------------------------------------- the real accelerator
def test_the_probe_accelerator_runs_every_option_and_keeps_nothing(
    make_engine: Callable[..., LLMEngine], question: list[int]
) -> None:
    """sagellm-cot-acceleration's ``probe``, as configured by name: every option runs to a clean finish."""
    pytest.importorskip("sagellm.cot_acceleration")
    options = {"min_probe_gap": 4, "probe_every": 8, "max_probe_tokens": 4, "esc_window": 2}
    llm = llm_of(make_engine(cot_acceleration={"implementation": "probe", "options": options}))
    greedy = SamplingParams(max_tokens=24, temperature=0.0)
    sampled = SamplingParams(max_tokens=12, temperature=0.8, seed=2)
    early, capped = llm.generate([question] * 2, greedy, reasoning=[EARLY_EXIT, ReasoningOptions(budget=8)])
    (voted,) = llm.generate([question], sampled, reasoning=ReasoningOptions(early_exit=True, self_consistency=4))
    assert early.reasoning is not None and early.reasoning.num_probes >= 2
    assert capped.reasoning is not None and capped.reasoning.stopped_by in ("budget", "finished")
    assert voted.reasoning is not None and 2 <= voted.reasoning.num_samples <= 4
    assert llm.engine.cot is not None
    assert llm.engine.cot.accelerator.num_tracked() == 0  # type: ignore[attr-defined]  # released every request
    assert_idle(llm)


def test_cli_flags_configure_the_accelerator() -> None:
    parser = argparse.ArgumentParser()
    add_engine_options(parser)
    args = parser.parse_args(["--cot-acceleration", "scripted", "--cot-acceleration-option", "esc_window=3"])
    section = config_from_args(args).cot_acceleration
    assert section.implementation == "scripted" and section.options == {"esc_window": 3}
