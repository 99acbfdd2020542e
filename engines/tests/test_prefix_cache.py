"""Prefix reuse at block boundaries, and eviction of cached blocks under pressure.

The prompts are prefixes of one paragraph, with lengths on both sides of
the 16-token block boundaries, so they share cached blocks with each other.
At least one token of a prompt always runs through the model (it must
produce logits), so a prompt of ``n`` tokens can reuse at most the full
blocks of its first ``n - 1`` tokens. Every output is checked against
transformers (tokens and logits), the cached runs included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from engines_helpers import PROMPTS, drive
from logits_reference import Reference, logits_bound, verified_reference
from margins import record_margin

from sagellm.core.types import SamplingParams
from sagellm.engines import LLM, LLMEngine

pytestmark = pytest.mark.slow

LENGTHS = [16, 17, 31, 32, 33, 48, 64]
NEW = 8
PARAMS = SamplingParams(temperature=0.0, max_tokens=NEW, ignore_eos=True)


@pytest.fixture(scope="module")
def slices(llm: LLM) -> list[list[int]]:
    paragraph = llm.tokenizer.encode(PROMPTS[4][1])
    assert len(paragraph) >= max(LENGTHS)
    return [paragraph[:n] for n in LENGTHS]


@pytest.fixture(scope="module")
def slice_references(
    hf_model: Any, hf_exact_model: Any, make_engine: Callable[..., LLMEngine], slices: list[list[int]]
) -> list[Reference]:
    """transformers' greedy tokens and logits, verified in one forward pass per prompt (see conftest)."""
    candidates = drive(make_engine(prefix_cache={"enabled": False}), slices, sampling=PARAMS).token_ids
    references = [verified_reference(hf_model, hf_exact_model, ids, c) for ids, c in zip(slices, candidates)]
    assert [r.token_ids for r in references] == candidates, "the engine's greedy tokens differ from transformers'"
    return references


def check(result: Any, references: list[Reference]) -> None:
    assert result.token_ids == [r.token_ids for r in references]
    worst, bound = max(result.probe.max_abs_err.values()), logits_bound(references)
    record_margin("max |logit - float64|", worst, bound)
    assert worst <= bound


def test_second_pass_reuses_every_full_block_but_the_last_token(
    make_engine: Callable[..., LLMEngine], slices: list[list[int]], slice_references: list[Reference]
) -> None:
    engine = make_engine()
    first = drive(engine, slices, sampling=PARAMS, references=slice_references, one_at_a_time=True)
    check(first, slice_references)
    assert first.num_cached_tokens[0] == 0
    assert first.num_cached_tokens[1] == 16  # 17 tokens: the first block comes from the 16-token prompt

    second = drive(engine, slices, sampling=PARAMS, references=slice_references)  # all at once
    check(second, slice_references)
    assert second.num_cached_tokens == [(n - 1) // 16 * 16 for n in LENGTHS]
    assert engine.kv.hit_rate() > 0


def test_cached_blocks_are_evicted_when_the_pool_runs_short(
    make_engine: Callable[..., LLMEngine], slices: list[list[int]], slice_references: list[Reference]
) -> None:
    """Five blocks: the 64-token prompt (72 tokens with its output) needs all of them, so cached blocks must go."""
    engine = make_engine(kv_pool={"num_blocks": 5, "block_size": 16})
    for _ in range(2):
        result = drive(engine, slices, sampling=PARAMS, references=slice_references, one_at_a_time=True)
        check(result, slice_references)
        assert sum(result.num_cached_tokens) > 0  # blocks were reused before they were evicted
    assert engine.kv.num_evictions > 0
    assert engine.kv.num_free_blocks == 5


def test_cached_blocks_carry_the_prompt_length_of_their_last_user(
    make_engine: Callable[..., LLMEngine], slices: list[list[int]]
) -> None:
    """KVBlockMeta.request_tokens (a lifetime-predictor feature) follows the request that last used the block."""
    engine = make_engine()
    short, long = slices[3], slices[-1]  # 32 and 64 tokens: the long prompt reuses the short one's first block
    drive(engine, [short], sampling=SamplingParams(temperature=0.0, max_tokens=1))
    metas = list(engine.kv._meta.values())
    assert metas and {m.request_tokens for m in metas} == {len(short)}
    drive(engine, [long], sampling=SamplingParams(temperature=0.0, max_tokens=1))
    first = min(engine.kv._meta.values(), key=lambda m: m.created_at)
    assert first.access_count >= 1 and first.request_tokens == len(long)
