"""Speculative decoding in the engine: exact, rolled back, and reachable by config.

The proposer is the installed ``ngram`` decoder (prompt lookup): on prompts
that ask the model to copy or edit text it drafts most tokens, so every
test below verifies many drafts, accepted and rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from engines_helpers import GREEDY, drive
from server_helpers import start_server

from sagellm.core.types import SamplingParams, blocks_for
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.engine.step_cost import StepCostModel
from sagellm.engines.runtime.input_batch import ChunkWork

PASSAGE = (
    "The lighthouse keeper climbed the hundred and twelve steps every evening at dusk. He trimmed the wick, "
    "polished the great lens and wrote the weather in a leather book: wind from the west, sea moderate, "
    "visibility good. In thirty years he had missed the climb only twice, once for the birth of his daughter "
    "and once for a storm that tore the door from its hinges."
)
GROUNDED = [
    [{"role": "user", "content": f"Repeat this text word for word.\n\n{PASSAGE}"}],
    [{"role": "user", "content": f"Rewrite the text, replacing 'lighthouse keeper' with 'old sailor'.\n\n{PASSAGE}"}],
    [{"role": "user", "content": f"List every number written in words in this text, with its sentence.\n\n{PASSAGE}"}],
]
SPEC = {"implementation": "ngram", "num_speculative_tokens": 4}


@pytest.fixture(scope="module")
def grounded(llm: LLM) -> list[list[int]]:
    return [llm.tokenizer.encode_chat(messages) for messages in GROUNDED]


def _spec_engine(make_engine: Callable[..., LLMEngine], **sections: Any) -> LLMEngine:
    return make_engine(speculative_decoding=SPEC, **sections)


def test_float32_greedy_output_is_identical_with_speculation(
    make_engine: Callable[..., LLMEngine], grounded: list[list[int]], prompts: list[list[int]]
) -> None:
    every = grounded + prompts[:3]
    plain = drive(make_engine(), every)
    engine = _spec_engine(make_engine)
    spec = drive(engine, every)
    assert spec.token_ids == plain.token_ids
    assert spec.texts == plain.texts
    assert engine.speculator is not None
    assert engine.speculator.num_kept > 50 and engine.speculator.num_drafted > engine.speculator.num_kept
    assert spec.num_steps < plain.num_steps  # fewer passes for the same tokens


def test_one_sequence_at_a_time_is_identical_too(
    make_engine: Callable[..., LLMEngine], grounded: list[list[int]]
) -> None:
    """Batch 1, where speculation drafts the most."""
    plain = drive(make_engine(), grounded, one_at_a_time=True)
    spec = drive(_spec_engine(make_engine), grounded, one_at_a_time=True)
    assert spec.token_ids == plain.token_ids


def test_rejected_drafts_leave_no_kv_behind(make_engine: Callable[..., LLMEngine], grounded: list[list[int]]) -> None:
    """After every step each running sequence holds exactly the blocks of its computed KV; all come back."""
    engine = _spec_engine(make_engine)
    free_before = engine.kv.pool.num_free_blocks
    for i, prompt in enumerate(grounded):
        engine.add_request(prompt, GREEDY, request_id=f"r{i}")
    verifies = 0
    while engine.has_unfinished():
        engine.step()
        for seq in engine._running:
            assert seq.num_computed_tokens == seq.num_tokens - 1
            assert len(seq.block_ids) == blocks_for(seq.num_computed_tokens, engine.kv.block_size)
        verifies = engine.speculator.num_verifies if engine.speculator else 0
    assert verifies > 10
    assert engine.kv.pool.num_free_blocks + len(engine.kv._evictable) == free_before


def test_the_prefix_cache_holds_only_verified_kv(
    make_engine: Callable[..., LLMEngine], grounded: list[list[int]]
) -> None:
    """A follow-up turn reusing a speculated conversation's cached blocks continues exactly as a fresh engine does."""
    engine = _spec_engine(make_engine)
    first = drive(engine, grounded[:1]).token_ids[0]
    follow_up = grounded[0] + first
    cached = drive(engine, [follow_up])
    fresh = drive(make_engine(prefix_cache={"enabled": False}), [follow_up])
    assert cached.num_cached_tokens[0] >= engine.kv.block_size * 4  # the speculated output's blocks were reused
    assert cached.token_ids == fresh.token_ids


def test_stop_strings_max_tokens_and_logprobs_hold(
    make_engine: Callable[..., LLMEngine], grounded: list[list[int]]
) -> None:
    params = [
        SamplingParams(temperature=0.0, max_tokens=37, ignore_eos=True, logprobs=2),
        SamplingParams(temperature=0.0, max_tokens=200, stop=("steps",)),
        SamplingParams(temperature=0.0, max_tokens=9, ignore_eos=True),
    ]
    plain = _collect(make_engine(), grounded, params)
    spec = _collect(_spec_engine(make_engine), grounded, params)
    assert [o["tokens"] for o in spec] == [o["tokens"] for o in plain]
    assert [o["text"] for o in spec] == [o["text"] for o in plain]
    assert [o["finish"] for o in spec] == [o["finish"] for o in plain] == ["length", "stop", "length"]
    assert len(spec[0]["tokens"]) == 37 and len(spec[2]["tokens"]) == 9
    assert "steps" not in spec[1]["text"]
    assert len(spec[0]["logprobs"]) == 37 and len(spec[0]["top"]) == 37
    assert torch.allclose(torch.tensor(spec[0]["logprobs"]), torch.tensor(plain[0]["logprobs"]), atol=1e-3)
    assert max(o["largest_step"] for o in spec) > 1  # outputs carried several tokens at once


def _collect(engine: LLMEngine, prompts: Sequence[list[int]], params: Sequence[SamplingParams]) -> list[dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for i, (prompt, sampling) in enumerate(zip(prompts, params)):
        engine.add_request(prompt, sampling, request_id=f"r{i}")
        results[f"r{i}"] = {"tokens": [], "text": "", "logprobs": [], "top": [], "finish": None, "largest_step": 0}
    while engine.has_unfinished():
        for out in engine.step():
            result = results[out.request_id]
            result["tokens"].extend(out.new_token_ids)
            result["text"] += out.new_text
            result["logprobs"].extend(out.logprobs or ())
            result["top"].extend(out.top_logprobs or ())
            result["finish"] = out.finish_reason
            result["largest_step"] = max(result["largest_step"], len(out.new_token_ids))
    return [results[f"r{i}"] for i in range(len(prompts))]


def test_a_seeded_sample_is_the_same_with_speculation(
    make_engine: Callable[..., LLMEngine], grounded: list[list[int]]
) -> None:
    """Each token's uniform draw is fixed by the seed and its position, so drafts change nothing."""
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=48, seed=7, ignore_eos=True)
    plain = drive(make_engine(), grounded, sampling=params).token_ids
    engine = _spec_engine(make_engine)
    spec = drive(engine, grounded, sampling=params).token_ids
    assert spec == plain and all(len(tokens) == 48 for tokens in spec)
    assert engine.speculator is not None and engine.speculator.num_kept > 0


def test_speculation_stays_off_where_rows_are_not_free(
    make_engine: Callable[..., LLMEngine], grounded: list[list[int]]
) -> None:
    """A cost model in which every row costs as much as a whole one-row step: no draft is ever verified."""
    engine = _spec_engine(make_engine)
    assert engine.speculator is not None
    engine.speculator.cost = _EveryRowCosts()
    drive(engine, grounded)
    assert engine.speculator.num_verifies == 0


class _EveryRowCosts(StepCostModel):
    def predict(self, rows: int) -> float | None:
        return float(rows)


@pytest.fixture(scope="module")
def bf16_spec(model_path: Any) -> LLM:
    """The path users run: bf16 with the 4-bit kernels, speculation on."""
    return LLM(
        model={"path": str(model_path), "dtype": "bfloat16", "device": "cpu"},
        kv_pool={"num_blocks": 160},
        speculative_decoding=SPEC,
        show_progress=False,
    )


def test_bf16_keeps_only_the_verifiers_own_greedy_choices(bf16_spec: LLM, grounded: list[list[int]]) -> None:
    """Every kept draft equals the argmax of the verify pass's row before it, and the last token is that pass's."""
    engine = bf16_spec.engine
    passes: list[tuple[list[ChunkWork], torch.Tensor]] = []
    original = engine.runner.execute

    def execute(works: Sequence[ChunkWork]) -> tuple[torch.Tensor, list[Any]]:
        logits, seqs = original(works)
        passes.append(([w for w in works if w.samples], logits.clone()))  # before the step appends tokens
        return logits, seqs

    engine.runner.execute = execute  # type: ignore[method-assign]
    try:
        checked = 0
        for i, prompt in enumerate(grounded):
            engine.add_request(prompt, GREEDY, request_id=f"bf16-{i}")
        while engine.has_unfinished():
            outputs = {out.request_id: out.new_token_ids for out in engine.step()}
            works, logits = passes[-1]  # the sampling chunks of the pass
            row = 0
            for work in works:
                greedy = logits[row : row + work.num_logits_rows].argmax(dim=-1).tolist()
                row += work.num_logits_rows
                emitted = list(outputs[work.seq.request_id])
                assert emitted == greedy[: len(emitted)]
                assert list(work.drafts[: len(emitted) - 1]) == emitted[:-1]
                checked += len(work.drafts) > 0
    finally:
        engine.runner.execute = original  # type: ignore[method-assign]
    assert engine.speculator is not None
    assert checked > 10 and engine.speculator.num_kept > 20, (checked, engine.speculator.num_verifies, len(passes))


def test_sagellm_serve_streams_speculated_tokens(
    make_engine: Callable[..., LLMEngine], llm: LLM, grounded: list[list[int]]
) -> None:
    """Through the OpenAI server, streamed: the same text and usage as the offline engine without speculation."""
    openai = pytest.importorskip("openai")
    engine = _spec_engine(make_engine)
    running = start_server(engine)
    try:
        client = openai.OpenAI(base_url=running.openai_base_url, api_key="unused")
        stream = client.chat.completions.create(
            model=engine.model_name,
            messages=GROUNDED[0],
            max_tokens=60,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        served = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = next(c.usage for c in chunks if c.usage is not None)
        assert running.metric("sagellm:spec_accept_rate") > 0.5
    finally:
        running.stop()
    offline = drive(
        make_engine(), [llm.tokenizer.encode_chat(GROUNDED[0])], sampling=SamplingParams(temperature=0.0, max_tokens=60)
    )
    assert served == offline.texts[0]
    assert usage.completion_tokens == len(offline.token_ids[0])
